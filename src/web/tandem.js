/* tandem.js: the browser client of tandem, served at /tandem.js (API: docs/client.md).
 *
 * One file, no dependencies, ECMAScript 5 (and careful to parse in older
 * engines too: no reserved words as property names, no trailing commas).
 *
 *   var conn = tandem.connect('demo', {onEvent: function (ev) {}, onStatus: function (s, info) {}});
 *   conn.publish('chat', 'hello', function (err, res) {});
 *   conn.close();
 *
 * Channels that need a signed token (docs/security.md, Channel tokens): pass
 * `token`, a string or a function returning one or a promise of one. A
 * function is called before the first request, again `tokenRenew` ms
 * (at most half the token's life) before each token expires, and after a
 * refusal (or an attempt that failed before it opened); a renewed token
 * reopens an open stream from the cursor, and the next poll or publish
 * carries it (as `?token=`, on every transport).
 *
 * Transports, best first: fetch (multipart/mixed read with a stream reader),
 * eventsource (SSE, JSON envelope), xhr (SSE read from a growing
 * responseText), poll (XHR long-poll), jsonp (script-tag long-poll), iframe
 * (forever iframe). The app sees every event once, in id order, whatever the
 * transport and however often it reconnects or switches, or a gap event that
 * says which ids it will never see.
 *
 * The client keeps a cursor, `EPOCH:ID`: the last id seen and the epoch of
 * the channel's incarnation it belongs to. A server that restarted, or a
 * channel made again, has another epoch, and answers that cursor with a
 * reset gap: the client then forgets the ids it has seen and takes the new
 * incarnation's events from id 1.
 */
(function (win) {
  'use strict';

  var doc = win.document;
  var seq = 0;
  var BOUNDARY = 'tandem-b7d1e0';
  var STREAMS = {fetch: 1, eventsource: 1, xhr: 1, iframe: 1};
  var ORDER = ['fetch', 'eventsource', 'xhr', 'poll', 'jsonp', 'iframe'];
  var DEFAULTS = {
    base: '',
    transport: 'auto',
    streamTimeout: 4000,
    idleTimeout: 45000,
    retryMin: 500,
    retryMax: 30000,
    streamRetry: 60000,
    pollTimeout: 25,
    maxStreamBytes: 1048576,
    maxFrameEvents: 1000,
    fallback: true,
    withCredentials: false,
    echo: false,
    publishVia: 'auto',
    // A channel token (docs/security.md): a string, or a function returning
    // one or a promise of one, called again before the token expires.
    token: null,
    // How long before its expiry a token is renewed (ms; at most half its life).
    tokenRenew: 30000
  };

  function noop() {}

  function now() {
    return new Date().getTime();
  }

  function has(o, k) {
    return Object.prototype.hasOwnProperty.call(o, k);
  }

  function listen(el, name, fn) {
    if (el.addEventListener) {
      el.addEventListener(name, fn, false);
    } else if (el.attachEvent) {
      el.attachEvent('on' + name, fn);
    }
  }

  function unlisten(el, name, fn) {
    if (el.removeEventListener) {
      el.removeEventListener(name, fn, false);
    } else if (el.detachEvent) {
      el.detachEvent('on' + name, fn);
    }
  }

  // Calls an app callback; an exception in it is rethrown on its own so it
  // shows in the console without breaking the transport that called it.
  function safely(fn, self, args) {
    if (typeof fn !== 'function') {
      return;
    }
    try {
      fn.apply(self, args);
    } catch (e) {
      setTimeout(function () { throw e; }, 0);
    }
  }

  function parseJSON(text) {
    if (win.JSON && win.JSON.parse) {
      return win.JSON.parse(text);
    }
    // IE 7 and older: tandem's JSON is script-safe (see docs/protocol.md).
    return (new Function('return (' + text + ');'))();
  }

  function toJSON(v) {
    return win.JSON && win.JSON.stringify ? win.JSON.stringify(v) : String(v);
  }

  function encode(params) {
    var out = [], k;
    for (k in params) {
      if (has(params, k) && params[k] !== null && params[k] !== undefined) {
        out.push(encodeURIComponent(k) + '=' + encodeURIComponent(String(params[k])));
      }
    }
    return out.join('&');
  }

  function trim(s) {
    return String(s).replace(/^\s+|\s+$/g, '');
  }

  // A cursor, `EPOCH:ID` or a bare `ID`: {epoch: 'k3j9' or null, id: N}, or
  // null if it is neither (docs/protocol.md).
  function parseCursor(c) {
    var m = /^(?:([0-9a-z]{1,16}):)?([0-9]+)$/.exec(String(c));
    if (!m) {
      return null;
    }
    return {epoch: m[1] || null, id: parseInt(m[2], 10)};
  }

  function randomId() {
    var s = 'c', i;
    for (i = 0; i < 12; i++) {
      s += Math.floor(Math.random() * 36).toString(36);
    }
    return s;
  }

  // The same rule as the server's (src/event.rs): which payloads are text.
  function isTextual(ct) {
    if (!ct) {
      return true;
    }
    ct = trim(String(ct).split(';')[0]).toLowerCase();
    return ct.indexOf('text/') === 0 || /\+(json|xml)$/.test(ct) ||
      ct === 'application/json' || ct === 'application/javascript' ||
      ct === 'application/xml' || ct === 'application/x-www-form-urlencoded';
  }

  function newXhr() {
    return win.XMLHttpRequest ? new win.XMLHttpRequest() : null;
  }

  function sameOrigin(base) {
    if (!base || base.charAt(0) === '/' && base.charAt(1) !== '/') {
      return true;
    }
    var loc = win.location, a = doc.createElement('a');
    a.href = base;
    // IE leaves the default port in a.host; compare what both sides spell the same.
    var port = function (p, proto) {
      return p || (proto === 'https:' ? '443' : '80');
    };
    return a.protocol === loc.protocol && a.hostname === loc.hostname &&
      port(a.port, a.protocol) === port(loc.port, loc.protocol);
  }

  /* What this browser can do, for a server at `base`. */
  function capabilities(base) {
    var same = sameOrigin(base);
    var x = newXhr();
    var cors = !!x && 'withCredentials' in x;
    var xhr = !!x && (same || cors);
    return {
      same: same,
      fetch: !!(win.fetch && win.ReadableStream && win.Uint8Array && win.Response &&
        'body' in win.Response.prototype),
      eventsource: !!win.EventSource && (same || cors),
      xhr: xhr && 'onprogress' in x,
      poll: xhr,
      jsonp: true,
      iframe: true
    };
  }

  /* ---- bytes: UTF-8 and base64 for the fetch transport and tandem.bytes ---- */

  function binaryString(bytes, start, end) {
    var s = '', i, step = 0x2000;
    for (i = start; i < end; i += step) {
      s += String.fromCharCode.apply(null, bytes.subarray(i, Math.min(end, i + step)));
    }
    return s;
  }

  var decoder = null;
  try {
    decoder = win.TextDecoder ? new win.TextDecoder('utf-8', {fatal: true}) : null;
  } catch (e) {
    decoder = null;
  }

  // The text of UTF-8 bytes, or null if they are not valid UTF-8.
  function utf8(bytes) {
    try {
      if (decoder) {
        return decoder.decode(bytes);
      }
      return decodeURIComponent(escape(binaryString(bytes, 0, bytes.length)));
    } catch (e) {
      return null;
    }
  }

  function toBase64(bytes) {
    return win.btoa(binaryString(bytes, 0, bytes.length));
  }

  function fromBase64(s) {
    var bin = win.atob(s.replace(/\s+/g, '')), n = bin.length, i;
    var out = win.Uint8Array ? new win.Uint8Array(n) : [];
    for (i = 0; i < n; i++) {
      out[i] = bin.charCodeAt(i);
    }
    return out;
  }

  function latin1(bytes, start, end) {
    return binaryString(bytes, start, end);
  }

  /* ---- multipart/mixed, read from a byte stream (docs/protocol.md) ---- */

  function indexOf(buf, pat, from) {
    var n = buf.length - pat.length, first = pat[0], i, j;
    for (i = from; i <= n; i++) {
      if (buf[i] === first) {
        for (j = 1; j < pat.length && buf[i + j] === pat[j]; j++) {
          // compare
        }
        if (j === pat.length) {
          return i;
        }
      }
    }
    return -1;
  }

  function asciiBytes(s) {
    var out = new win.Uint8Array(s.length), i;
    for (i = 0; i < s.length; i++) {
      out[i] = s.charCodeAt(i);
    }
    return out;
  }

  var CRLF = [13, 10];

  /* Calls onPart(object) with each part as a long-poll style JSON object:
   * {id, type, data | data_b64, content_type, from, time}, or a gap. */
  function MultipartReader(boundary, onPart) {
    this.delim = asciiBytes('--' + boundary);
    this.onPart = onPart;
    this.buf = new win.Uint8Array(0);
    this.pos = 0;
    this.state = 0; // 0: looking for a delimiter, 1: headers, 2: body, 3: done
    this.headers = {};
  }

  MultipartReader.prototype.push = function (chunk) {
    var rest = this.buf.length - this.pos;
    var buf = new win.Uint8Array(rest + chunk.length);
    buf.set(this.buf.subarray(this.pos), 0);
    buf.set(chunk, rest);
    this.buf = buf;
    this.pos = 0;
    while (this.step()) {
      // parse all that is complete
    }
  };

  // Parses one piece; false when more bytes are needed.
  MultipartReader.prototype.step = function () {
    var buf = this.buf, pos = this.pos, i, line, colon, len, end, body;
    if (this.state === 0) {
      i = indexOf(buf, this.delim, pos);
      if (i < 0) {
        this.pos = Math.max(pos, buf.length - this.delim.length - 1);
        return false;
      }
      end = i + this.delim.length;
      if (buf.length < end + 2) {
        this.pos = i;
        return false;
      }
      if (buf[end] === 45 && buf[end + 1] === 45) {
        this.state = 3;
        this.pos = buf.length;
        return false;
      }
      this.pos = buf[end] === 13 ? end + 2 : end + 1;
      this.state = 1;
      this.headers = {};
      return true;
    }
    if (this.state === 1) {
      i = indexOf(buf, CRLF, pos);
      if (i < 0) {
        return false;
      }
      line = latin1(buf, pos, i);
      this.pos = i + 2;
      if (line === '') {
        this.state = 2;
        return true;
      }
      colon = line.indexOf(':');
      if (colon > 0) {
        // Heartbeats are `X-Heartbeat: 1` lines here: kept, never looked at.
        this.headers[trim(line.substring(0, colon)).toLowerCase()] = trim(line.substring(colon + 1));
      }
      return true;
    }
    if (this.state === 2) {
      len = has(this.headers, 'content-length') ? parseInt(this.headers['content-length'], 10) : -1;
      if (len >= 0) {
        if (buf.length - pos < len) {
          return false;
        }
        end = pos + len;
      } else {
        end = indexOf(buf, asciiBytes('\r\n--' + BOUNDARY), pos);
        if (end < 0) {
          return false;
        }
      }
      body = buf.subarray(pos, end);
      this.pos = end;
      this.state = 0;
      this.part(this.headers, body);
      return true;
    }
    return false;
  };

  MultipartReader.prototype.part = function (h, body) {
    var ct = h['content-type'] || null, text, o;
    if ((h['content-transfer-encoding'] || '').toLowerCase() === 'base64') {
      body = fromBase64(latin1(body, 0, body.length));
    }
    text = isTextual(ct) ? utf8(body) : null;
    if (h['event-type'] === 'gap' && !has(h, 'event-id')) {
      this.onPart({type: 'gap', data: text});
      return;
    }
    o = {id: parseInt(h['event-id'], 10), type: h['event-type'] || 'message'};
    if (h['event-epoch']) {
      o.epoch = h['event-epoch'];
    }
    if (text !== null) {
      o.data = text;
    } else {
      o.data_b64 = toBase64(body);
    }
    if (ct) {
      o.content_type = ct;
    }
    if (h['event-from']) {
      o.from = h['event-from'];
    }
    if (h['event-time']) {
      o.time = parseInt(h['event-time'], 10);
    }
    this.onPart(o);
  };

  /* ---- text/event-stream, read incrementally (xhr transport) ---- */

  function SseReader(onBlock) {
    this.onBlock = onBlock;
    this.rest = '';
    this.data = null;
    this.event = '';
  }

  SseReader.prototype.feed = function (text) {
    var s = this.rest + text, start = 0, nl, line, colon, field, value;
    for (;;) {
      nl = s.indexOf('\n', start);
      if (nl < 0) {
        break;
      }
      line = s.substring(start, nl);
      start = nl + 1;
      if (line.charAt(line.length - 1) === '\r') {
        line = line.substring(0, line.length - 1);
      }
      if (line === '') {
        if (this.data !== null) {
          this.onBlock(this.event || 'message', this.data);
        }
        this.data = null;
        this.event = '';
        continue;
      }
      if (line.charAt(0) === ':') {
        continue; // padding, heartbeat, :closing
      }
      colon = line.indexOf(':');
      field = colon < 0 ? line : line.substring(0, colon);
      value = colon < 0 ? '' : line.substring(colon + 1);
      if (value.charAt(0) === ' ') {
        value = value.substring(1);
      }
      if (field === 'data') {
        this.data = this.data === null ? value : this.data + '\n' + value;
      } else if (field === 'event') {
        this.event = value;
      }
    }
    this.rest = s.substring(start);
  };

  /* ---- transports: each opens one attempt and reports to the connection ---- */

  var transports = {};

  transports.fetch = function (conn, att) {
    var ctrl = win.AbortController ? new win.AbortController() : null;
    var reader = null;
    var init = {cache: 'no-store', credentials: conn.options.withCredentials ? 'include' : 'same-origin'};
    if (ctrl) {
      init.signal = ctrl.signal;
    }
    att.abort = function () {
      if (ctrl) {
        ctrl.abort();
      }
      if (reader) {
        try {
          reader.cancel().then(noop, noop);
        } catch (e) {
          // already closed
        }
      }
    };
    var failed = function () {
      conn._fail(att, 'network error');
    };
    win.fetch(conn._url('mixed', {}), init).then(function (resp) {
      if (att.dead) {
        return;
      }
      if (!resp.ok || !resp.body) {
        conn._fail(att, 'HTTP ' + resp.status);
        return;
      }
      var m = /boundary="?([^";]+)"?/i.exec(resp.headers.get('Content-Type') || '');
      var parts = new MultipartReader(m ? m[1] : BOUNDARY, function (o) {
        conn._receive(att, o);
      });
      reader = resp.body.getReader();
      if (att.dead) {
        att.abort();
        return;
      }
      var pump = function () {
        reader.read().then(function (r) {
          if (att.dead) {
            return;
          }
          if (r.done) {
            conn._fail(att, 'stream ended');
            return;
          }
          conn._bytes(att);
          try {
            parts.push(r.value);
          } catch (e) {
            conn._fail(att, 'bad stream: ' + e.message);
            return;
          }
          if (!att.dead) {
            pump();
          }
        }, failed);
      };
      pump();
    }, failed);
  };

  transports.eventsource = function (conn, att) {
    var init = conn.options.withCredentials ? {withCredentials: true} : undefined;
    var es = new win.EventSource(conn._url('sse', {envelope: 'json'}), init);
    var hb = function () {
      conn._bytes(att);
    };
    att.abort = function () {
      es.onmessage = null;
      es.onerror = null;
      es.removeEventListener('hb', hb, false);
      es.close();
    };
    // In the JSON envelope the server's prelude and heartbeats are `hb`
    // events (EventSource hides comments), so the stream can be sensed.
    es.addEventListener('hb', hb, false);
    es.onmessage = function (m) {
      var o;
      try {
        o = parseJSON(m.data);
      } catch (e) {
        return;
      }
      conn._receive(att, o);
    };
    es.onerror = function () {
      // EventSource would come back by itself from its first `since`; we
      // come back ourselves, from the last id seen, with our own backoff.
      conn._fail(att, 'stream ended');
    };
  };

  transports.xhr = function (conn, att) {
    var xhr = newXhr(), seen = 0;
    var sse = new SseReader(function (type, data) {
      if (type === 'hb' || att.dead) {
        return;
      }
      var o;
      try {
        o = parseJSON(data);
      } catch (e) {
        return;
      }
      conn._receive(att, o);
    });
    var read = function () {
      var text;
      if (att.dead) {
        return;
      }
      try {
        text = xhr.responseText;
      } catch (e) {
        return;
      }
      if (!text || text.length <= seen) {
        return;
      }
      conn._bytes(att);
      sse.feed(text.substring(seen));
      seen = text.length;
      // responseText only grows: start afresh now and then to free it.
      if (seen > conn.options.maxStreamBytes && !att.dead) {
        conn._restart(att);
      }
    };
    att.abort = function () {
      xhr.onreadystatechange = noop;
      xhr.onprogress = null;
      try {
        xhr.abort();
      } catch (e) {
        // nothing to abort
      }
    };
    xhr.open('GET', conn._url('sse', {envelope: 'json'}), true);
    if (conn.options.withCredentials) {
      xhr.withCredentials = true;
    }
    xhr.onprogress = read;
    xhr.onreadystatechange = function () {
      if (xhr.readyState === 3) {
        read();
      } else if (xhr.readyState === 4) {
        read();
        conn._fail(att, xhr.status === 200 ? 'stream ended' : 'HTTP ' + xhr.status);
      }
    };
    xhr.send(null);
  };

  // One long-poll after another; att.probe makes it a single `timeout=0` poll.
  transports.poll = function (conn, att) {
    var next = function () {
      var xhr = newXhr(), wait = conn._pollWait(att);
      var timer = setTimeout(function () {
        att.abort();
        conn._fail(att, 'timeout');
      }, wait * 1000 + 10000);
      att.abort = function () {
        clearTimeout(timer);
        xhr.onreadystatechange = noop;
        try {
          xhr.abort();
        } catch (e) {
          // nothing to abort
        }
      };
      xhr.open('GET', conn._url('poll', {timeout: wait, _: ++seq}), true);
      if (conn.options.withCredentials) {
        xhr.withCredentials = true;
      }
      xhr.onreadystatechange = function () {
        var body;
        if (xhr.readyState !== 4 || att.dead) {
          return;
        }
        clearTimeout(timer);
        if (xhr.status !== 200) {
          conn._fail(att, xhr.status ? 'HTTP ' + xhr.status : 'network error');
          return;
        }
        try {
          body = parseJSON(xhr.responseText);
        } catch (e) {
          conn._fail(att, 'bad answer');
          return;
        }
        if (conn._batch(att, body)) {
          next();
        }
      };
      xhr.send(null);
    };
    next();
  };

  function forget(name) {
    try {
      delete win[name];
    } catch (e) {
      win[name] = undefined;
    }
  }

  function scriptParent() {
    return doc.getElementsByTagName('head')[0] || doc.documentElement;
  }

  transports.jsonp = function (conn, att) {
    var next = function () {
      var name = '_tandemJ' + (++seq), done = false, timer, wait = conn._pollWait(att);
      var script = doc.createElement('script');
      var cleanup = function (late) {
        if (done) {
          return;
        }
        done = true;
        clearTimeout(timer);
        script.onload = script.onerror = script.onreadystatechange = null;
        if (script.parentNode) {
          script.parentNode.removeChild(script);
        }
        if (late) {
          // The script may still arrive: let it find a function that does nothing.
          win[name] = function () {
            forget(name);
          };
        } else {
          forget(name);
        }
      };
      var failed = function (why) {
        if (!done) {
          cleanup(true);
          conn._fail(att, why);
        }
      };
      att.abort = function () {
        cleanup(true);
      };
      win[name] = function (body) {
        if (done) {
          return;
        }
        cleanup(false);
        if (!att.dead && conn._batch(att, body)) {
          next();
        }
      };
      timer = setTimeout(function () {
        failed('timeout');
      }, wait * 1000 + 10000);
      script.onerror = function () {
        failed('network error');
      };
      // After the script ran: if it did not call back, it was an error answer.
      script.onload = function () {
        failed('bad answer');
      };
      script.onreadystatechange = function () {
        if (this.readyState === 'loaded' || this.readyState === 'complete') {
          failed('bad answer');
        }
      };
      script.async = true;
      script.src = conn._url('jsonp', {callback: name, timeout: wait, _: seq});
      scriptParent().appendChild(script);
    };
    next();
  };

  transports.iframe = function (conn, att) {
    var name = '_tandemF' + (++seq), count = 0, watch = null, lastNodes = -1;
    var frame = doc.createElement('iframe');
    var same = conn._caps.same;
    var onload = function () {
      try {
        if (frame.contentWindow.location.href === 'about:blank') {
          return;
        }
      } catch (e) {
        // another origin: it is the stream's page that ended
      }
      conn._fail(att, 'stream ended');
    };
    win[name] = function (o) {
      if (att.dead) {
        return;
      }
      conn._receive(att, o);
      // The page keeps every script element: start afresh now and then
      // (on the next turn: this runs inside the frame's own script).
      if (++count === conn.options.maxFrameEvents) {
        setTimeout(function () {
          conn._restart(att);
        }, 0);
      }
    };
    att.abort = function () {
      if (watch) {
        clearInterval(watch);
      }
      unlisten(frame, 'load', onload);
      win[name] = function () {};
      try {
        frame.src = 'about:blank';
      } catch (e) {
        // gone already
      }
      if (frame.parentNode) {
        frame.parentNode.removeChild(frame);
      }
      setTimeout(function () {
        forget(name);
      }, 1000);
    };
    frame.style.cssText = 'position:absolute;left:-9999px;top:-9999px;width:1px;height:1px;border:0';
    frame.setAttribute('tabindex', '-1');
    frame.setAttribute('aria-hidden', 'true');
    frame.src = conn._url('iframe', {callback: name, _: seq});
    (doc.body || doc.documentElement).appendChild(frame);
    listen(frame, 'load', onload);
    if (same) {
      // Same origin: watch the page grow (its title, then heartbeat comments),
      // so the stream can be sensed like the others.
      watch = setInterval(function () {
        var d, n;
        try {
          d = frame.contentWindow.document;
          if (d.title !== 'tandem' || !d.body) {
            return;
          }
          n = d.body.childNodes.length;
        } catch (e) {
          return;
        }
        if (n !== lastNodes) {
          lastNodes = n;
          conn._bytes(att);
        }
      }, 200);
    } else {
      // Another origin: nothing to watch until the first event.
      conn._bytes(att);
    }
  };

  /* ---- publishing ---- */

  function publishXhr(conn, url, body, callback) {
    var xhr = newXhr();
    xhr.open('POST', url, true);
    if (conn.options.withCredentials) {
      xhr.withCredentials = true;
    }
    xhr.setRequestHeader('Content-Type', 'application/x-www-form-urlencoded; charset=UTF-8');
    xhr.onreadystatechange = function () {
      var res = null, err = null;
      if (xhr.readyState !== 4) {
        return;
      }
      try {
        res = parseJSON(xhr.responseText);
      } catch (e) {
        res = null;
      }
      if (xhr.status < 200 || xhr.status > 299) {
        err = new Error(res && res.error ? res.error : xhr.status ? 'HTTP ' + xhr.status : 'network error');
        err.status = xhr.status;
        res = null;
      }
      callback(err, res);
    };
    xhr.send(body);
  }

  // For browsers without CORS XHR: a hidden form posted into a hidden iframe.
  function publishForm(url, fields, callback) {
    var name = '_tandemP' + (++seq), done = false, k, input, timer;
    var holder = doc.createElement('div');
    holder.style.display = 'none';
    // A name given through innerHTML is what old IE needs for form targets.
    holder.innerHTML = '<iframe name="' + name + '" src="about:blank"></iframe>';
    (doc.body || doc.documentElement).appendChild(holder);
    var frame = holder.getElementsByTagName('iframe')[0];
    var form = doc.createElement('form');
    form.method = 'post';
    form.action = url;
    form.target = name;
    form.setAttribute('accept-charset', 'utf-8');
    for (k in fields) {
      if (has(fields, k)) {
        input = doc.createElement('input');
        input.type = 'hidden';
        input.name = k;
        input.value = fields[k];
        form.appendChild(input);
      }
    }
    holder.appendChild(form);
    var finish = function (err, res) {
      if (done) {
        return;
      }
      done = true;
      clearTimeout(timer);
      unlisten(frame, 'load', onload);
      setTimeout(function () {
        if (holder.parentNode) {
          holder.parentNode.removeChild(holder);
        }
      }, 0);
      callback(err, res);
    };
    var onload = function () {
      var text;
      try {
        if (frame.contentWindow.location.href === 'about:blank') {
          return; // the empty page, not the answer
        }
        text = frame.contentWindow.document.body;
        text = text ? text.textContent || text.innerText || '' : '';
      } catch (e) {
        finish(null, {}); // another origin: sent, answer unreadable
        return;
      }
      var res = null;
      try {
        res = parseJSON(text);
      } catch (e2) {
        res = null;
      }
      if (res && res.error) {
        finish(new Error(res.error), null);
      } else {
        finish(null, res || {});
      }
    };
    listen(frame, 'load', onload);
    timer = setTimeout(function () {
      finish(new Error('timeout'), null);
    }, 30000);
    form.submit();
  }

  /* ---- the connection ---- */

  function Connection(channel, options) {
    var o = {}, k;
    options = options || {};
    for (k in DEFAULTS) {
      if (has(DEFAULTS, k)) {
        o[k] = has(options, k) && options[k] !== undefined ? options[k] : DEFAULTS[k];
      }
    }
    this.options = o;
    this.channel = String(channel);
    this.client = options.client ? String(options.client) : randomId();
    // The cursor: the last id seen, and the epoch it belongs to (null until
    // the server has named one, or for a bare `since`).
    var since = options.since === undefined || options.since === null ? null : parseCursor(options.since);
    this.lastId = since ? since.id : null;
    this.epoch = since ? since.epoch : null;
    this.status = null;
    this.transport = null;
    this._onEvent = options.onEvent;
    this._onStatus = options.onStatus;
    this._backlog = options.backlog;
    this._caps = capabilities(o.base);
    this._preferred = this._choose(o.transport);
    this._current = this._preferred;
    this._att = null;
    this._timer = null;
    this._failures = 0;
    this._streamRetry = o.streamRetry;
    this._retryStreamAt = 0;
    this._closed = false;
    this._queue = [];
    this._sending = false;
    this._token = null;
    this._tokenExp = 0;
    this._tokenRenewAt = 0;
    this._tokenTimer = null;
    if (typeof o.token === 'string') {
      this._setToken(o.token);
    }
    var self = this;
    // Start on the next turn, so the caller holds `conn` before any callback.
    this._timer = setTimeout(function () {
      self._timer = null;
      self._status('connecting', {transport: self._preferred, requested: o.transport});
      self._connect();
    }, 0);
  }

  Connection.prototype._choose = function (wanted) {
    var i;
    if (wanted && wanted !== 'auto' && this._caps[wanted]) {
      return wanted;
    }
    for (i = 0; i < ORDER.length; i++) {
      // iframe only when forced: jsonp works wherever it would.
      if (this._caps[ORDER[i]] && ORDER[i] !== 'iframe') {
        return ORDER[i];
      }
    }
    return 'iframe';
  };

  // The long-poll this browser can do with this server.
  Connection.prototype._pollKind = function () {
    return this._caps.poll ? 'poll' : 'jsonp';
  };

  // How long a long-poll may be held. The first poll of an attempt answers
  // at once, so the line is known to work (status `open`) without waiting
  // for an event; in fallback, no poll is held past the time to try
  // streaming again.
  Connection.prototype._pollWait = function (att) {
    var t = this.options.pollTimeout;
    if (att.probe || !att.alive) {
      return 0;
    }
    if (this._retryStreamAt && this._current !== this._preferred) {
      t = Math.max(1, Math.min(t, Math.ceil((this._retryStreamAt - now()) / 1000)));
    }
    return t;
  };

  /* Where the connection is: `EPOCH:ID` (a bare `ID` before the server has
   * named an epoch), or null before it knows. Pass it as `since` to resume
   * from here, for example after the page reloads. */
  Connection.prototype.cursor = function () {
    if (this.lastId === null) {
      return null;
    }
    return this.epoch === null ? String(this.lastId) : this.epoch + ':' + this.lastId;
  };

  Connection.prototype._url = function (route, extra) {
    var p = {}, k;
    if (this.lastId !== null) {
      p.since = this.cursor();
    } else if (this._backlog) {
      p.backlog = this._backlog;
    }
    if (!this.options.echo) {
      p.client = this.client;
    }
    if (this._token) {
      p.token = this._token;
    }
    for (k in extra) {
      if (has(extra, k)) {
        p[k] = extra[k];
      }
    }
    return this.options.base + '/ch/' + encodeURIComponent(this.channel) + '/' + route + '?' + encode(p);
  };

  Connection.prototype._status = function (status, info) {
    info = info || {};
    if (!info.transport) {
      info.transport = this.transport || this._current;
    }
    this.status = status;
    safely(this._onStatus, this, [status, info]);
  };

  /* ---- channel tokens ---- */

  // A token's expiry in ms, read from its payload (`v1.PAYLOAD.SIG`), or 0.
  function tokenExpiry(t) {
    var parts = String(t).split('.'), b, o;
    if (parts.length !== 3 || !win.atob) {
      return 0;
    }
    b = parts[1].replace(/-/g, '+').replace(/_/g, '/');
    while (b.length % 4) {
      b += '=';
    }
    try {
      o = parseJSON(win.atob(b));
    } catch (e) {
      o = null;
    }
    return o && typeof o.exp === 'number' ? o.exp * 1000 : 0;
  }

  // Whether the token must be fetched (again) before the next request.
  Connection.prototype._tokenStale = function () {
    if (typeof this.options.token !== 'function') {
      return false;
    }
    return this._token === null || (this._tokenExp && now() >= this._tokenRenewAt);
  };

  Connection.prototype._setToken = function (t) {
    var self = this, left;
    this._token = t === null || t === undefined ? null : String(t);
    this._tokenExp = this._token ? tokenExpiry(this._token) : 0;
    clearTimeout(this._tokenTimer);
    this._tokenTimer = null;
    if (!this._tokenExp) {
      return;
    }
    left = this._tokenExp - now();
    this._tokenRenewAt = this._tokenExp - Math.min(this.options.tokenRenew, left / 2);
    if (typeof this.options.token === 'function' && !this._closed) {
      this._tokenTimer = setTimeout(function () {
        self._tokenTimer = null;
        self._renew(function () {
          // A stream holds the old token until the server ends it at the
          // expiry: open a new one now, from the cursor, so nothing waits.
          var att = self._att;
          if (att && !att.dead && STREAMS[att.name] && att.alive) {
            self._restart(att);
          }
        });
      }, Math.max(0, this._tokenRenewAt - now()));
    }
  };

  // Asks the token function for a fresh token, then calls done (whatever
  // came: a refusal by the server retries with backoff, asking again).
  Connection.prototype._renew = function (done) {
    var self = this, got, called = false;
    var finish = function (t) {
      if (called) {
        return;
      }
      called = true;
      if (t !== null && t !== undefined && t !== '') {
        self._setToken(t);
      }
      if (!self._closed) {
        done();
      }
    };
    try {
      got = this.options.token.call(this);
    } catch (e) {
      got = null;
    }
    if (got && typeof got.then === 'function') {
      got.then(finish, function () {
        finish(null);
      });
    } else {
      finish(got);
    }
  };

  Connection.prototype._connect = function () {
    var self = this;
    if (this._closed) {
      return;
    }
    if (this._tokenStale()) {
      this._renew(function () {
        self._connectNow();
      });
      return;
    }
    this._connectNow();
  };

  Connection.prototype._connectNow = function () {
    var self = this, name = this._current, probe = false;
    if (this._closed) {
      return;
    }
    // A stream needs a cursor to resume from: without one, one poll that
    // returns at once learns it (and brings the backlog, if asked for).
    if (this.lastId === null && STREAMS[name]) {
      name = this._pollKind();
      probe = true;
    }
    // Script tags and iframes added before the page has loaded hold its
    // load event (and the busy indicator) for as long as they stay open.
    if ((name === 'jsonp' || name === 'iframe') && doc.readyState && doc.readyState !== 'complete') {
      var loaded = function () {
        unlisten(win, 'load', loaded);
        if (!self._closed) {
          self._connect();
        }
      };
      listen(win, 'load', loaded);
      return;
    }
    this._start(name, probe);
  };

  Connection.prototype._start = function (name, probe) {
    var self = this;
    var att = {name: name, probe: probe, alive: false, dead: false, abort: noop, sense: null, idle: null};
    this._att = att;
    this.transport = name;
    if (STREAMS[name]) {
      att.sense = setTimeout(function () {
        self._sense(att);
      }, this.options.streamTimeout);
    }
    try {
      transports[name](this, att);
    } catch (e) {
      this._fail(att, 'cannot start ' + name + ': ' + e.message);
    }
  };

  Connection.prototype._kill = function (att) {
    att.dead = true;
    clearTimeout(att.sense);
    clearTimeout(att.idle);
    try {
      att.abort();
    } catch (e) {
      // best effort
    }
  };

  // Any byte of the attempt: the line is alive.
  Connection.prototype._bytes = function (att) {
    var self = this;
    if (att.dead || att !== this._att) {
      return;
    }
    clearTimeout(att.idle);
    if (STREAMS[att.name] && this.options.idleTimeout > 0) {
      att.idle = setTimeout(function () {
        self._fail(att, 'idle for ' + self.options.idleTimeout + ' ms');
      }, this.options.idleTimeout);
    }
    if (!att.alive) {
      att.alive = true;
      clearTimeout(att.sense);
      this._failures = 0;
      if (STREAMS[att.name]) {
        this._streamRetry = this.options.streamRetry;
      }
      if (this.status !== 'open' && !att.probe) {
        this._status('open', {transport: att.name});
      }
    }
  };

  Connection.prototype._receive = function (att, o) {
    if (att.dead || att !== this._att) {
      return;
    }
    this._bytes(att);
    this._handle(o);
  };

  // A long-poll answer; true when the transport should poll again.
  Connection.prototype._batch = function (att, body) {
    var events = body && body.events, i;
    // `next` is a cursor string, `EPOCH:ID` (a number from older servers).
    var next = body && (typeof body.next === 'string' || typeof body.next === 'number') ?
      parseCursor(body.next) : null;
    if (att.dead || att !== this._att) {
      return false;
    }
    if (!events || !next) {
      this._fail(att, 'bad answer');
      return false;
    }
    this._bytes(att);
    for (i = 0; i < events.length; i++) {
      this._handle(events[i]);
      if (att.dead) {
        return false;
      }
    }
    this.lastId = next.id;
    if (next.epoch) {
      this.epoch = next.epoch;
    }
    if (att.probe) {
      this._kill(att);
      this._start(this._current, false);
      return false;
    }
    if (STREAMS[this._preferred] && this._current !== this._preferred && this._retryStreamAt &&
        now() >= this._retryStreamAt) {
      // Back on the stream now and then: the buffering proxy may be gone.
      this._kill(att);
      this._current = this._preferred;
      this._status('connecting', {transport: this._current, reason: 'retrying streaming'});
      this._start(this._current, false);
      return false;
    }
    return true;
  };

  // One event object (long-poll JSON shape) from any transport: deduplicated,
  // in order, then handed to the app.
  Connection.prototype._handle = function (o) {
    var g, ev;
    if (!o || this._closed) {
      return;
    }
    if (o.type === 'gap' && (o.id === undefined || o.id === null)) {
      try {
        g = typeof o.data === 'string' ? parseJSON(o.data) : o.data;
      } catch (e) {
        return;
      }
      if (g.reset) {
        // Another incarnation of the channel (the server restarted, or the
        // channel was made again): the ids we saw mean nothing in it. Forget
        // them and continue from `to` in the new epoch, so its events 1, 2...
        // are taken, not dropped as already seen.
        this.lastId = g.to;
        this.epoch = g.epoch || null;
        this._emit({type: 'gap', from: g.from, to: g.to, reset: true, epoch: this.epoch});
        return;
      }
      if (this.lastId !== null && g.to <= this.lastId) {
        return; // already accounted for
      }
      if (this.lastId !== null && g.from <= this.lastId) {
        g.from = this.lastId + 1;
      }
      this.lastId = g.to;
      if (g.epoch) {
        this.epoch = g.epoch;
      }
      this._emit({type: 'gap', from: g.from, to: g.to, reset: false, epoch: this.epoch});
      return;
    }
    if (!(o.id > 0)) {
      return;
    }
    if (o.epoch && this.epoch !== null && o.epoch !== this.epoch) {
      // An event of another incarnation with no reset gap before it: never
      // drop it as seen, nor skip silently what came before it there.
      this.lastId = o.id - 1;
      this.epoch = o.epoch;
      this._emit({type: 'gap', from: 1, to: o.id - 1, reset: true, epoch: o.epoch});
    }
    if (this.lastId !== null && o.id <= this.lastId) {
      return; // seen already (a resumed stream, a late answer)
    }
    this.lastId = o.id;
    if (o.epoch) {
      this.epoch = o.epoch;
    }
    ev = {
      id: o.id,
      epoch: o.epoch || null,
      type: o.type,
      data: o.data,
      from: o.from || null,
      contentType: o.content_type || null,
      time: o.time || null
    };
    if (o.data_b64 !== undefined) {
      ev.data = o.data_b64;
      ev.base64 = true;
    }
    this._emit(ev);
  };

  Connection.prototype._emit = function (ev) {
    safely(this._onEvent, this, [ev]);
  };

  // Nothing at all arrived on a stream: something in between buffers it.
  Connection.prototype._sense = function (att) {
    var to = this._pollKind(), from = att.name;
    if (att.dead || att.alive || att !== this._att) {
      return;
    }
    if (!this.options.fallback || from === to) {
      this._fail(att, 'no data within ' + this.options.streamTimeout + ' ms');
      return;
    }
    this._kill(att);
    this._current = to;
    this._retryStreamAt = now() + this._streamRetry;
    this._streamRetry = Math.min(this._streamRetry * 2, 900000);
    this._status('fallback', {
      transport: to,
      from: from,
      to: to,
      reason: 'no data within ' + this.options.streamTimeout + ' ms (a buffering proxy?)',
      retryIn: this._retryStreamAt - now()
    });
    this._start(to, false);
  };

  // The attempt ended or failed: come back with backoff, from the last id.
  Connection.prototype._fail = function (att, reason) {
    var self = this, delay, base;
    if (att.dead || att !== this._att) {
      return;
    }
    this._kill(att);
    if (this._closed) {
      return;
    }
    // A refused token (its secret dropped, say) is asked of the token
    // function again before the next attempt: on a 401 or 403, or, where
    // the transport cannot see the status (EventSource, JSONP, iframe), on
    // an attempt that failed before it opened.
    if (typeof this.options.token === 'function' &&
        (/^HTTP 40[13]$/.test(reason) || this.status !== 'open')) {
      this._token = null;
    }
    this._failures++;
    base = Math.min(this.options.retryMax, this.options.retryMin * Math.pow(2, this._failures - 1));
    delay = Math.round(base * (0.5 + Math.random() * 0.5));
    this._status('reconnecting', {transport: att.name, reason: reason, delay: delay, attempt: this._failures});
    this._timer = setTimeout(function () {
      self._timer = null;
      self._connect();
    }, delay);
  };

  // Start the same transport afresh, with no status change (memory recycling).
  Connection.prototype._restart = function (att) {
    var self = this;
    if (att.dead || att !== this._att) {
      return;
    }
    this._kill(att);
    this._timer = setTimeout(function () {
      self._timer = null;
      self._connect();
    }, 0);
  };

  /* Publishes one event; publishes leave in the order they were made, one at
   * a time. callback(err, result): result is the server's answer, {id: N}
   * (or {} when a cross-origin form post cannot read it). */
  Connection.prototype.publish = function (type, data, callback) {
    if (typeof data === 'function' && callback === undefined) {
      callback = data;
      data = type;
      type = 'message';
    }
    if (data !== null && data !== undefined && typeof data !== 'string') {
      data = toJSON(data);
    }
    this._queue.push({type: type || 'message', data: data === undefined || data === null ? '' : data, callback: callback});
    this._send();
  };

  Connection.prototype._send = function () {
    var self = this, item, url, via;
    if (this._sending || !this._queue.length) {
      return;
    }
    item = this._queue.shift();
    this._sending = true;
    if (this._tokenStale()) {
      // Fetch a fresh token first; the queue waits.
      this._queue.unshift(item);
      this._renew(function () {
        self._sending = false;
        self._send();
      });
      return;
    }
    url = this.options.base + '/ch/' + encodeURIComponent(this.channel) + '?' +
      encode(this._token ? {client: this.client, token: this._token} : {client: this.client});
    via = this.options.publishVia;
    if (via === 'auto') {
      via = this._caps.poll ? 'xhr' : 'form';
    }
    var done = function (err, res) {
      self._sending = false;
      safely(item.callback, self, [err, res]);
      self._send();
    };
    try {
      if (via === 'xhr') {
        publishXhr(this, url, encode({type: item.type, data: item.data}), done);
      } else {
        publishForm(url, {type: item.type, data: item.data}, done);
      }
    } catch (e) {
      done(e, null);
    }
  };

  /* Stops receiving for good. Publishes already queued are still sent. */
  Connection.prototype.close = function () {
    if (this._closed) {
      return;
    }
    this._closed = true;
    clearTimeout(this._timer);
    clearTimeout(this._tokenTimer);
    if (this._att) {
      this._kill(this._att);
    }
    this._status('closed', {});
  };

  var tandem = {
    version: '0.1.0',
    connect: function (channel, options) {
      return new Connection(channel, options);
    },
    /* The transports this browser can use with a server at `base`, best first. */
    transports: function (base) {
      var caps = capabilities(base || ''), out = [], i;
      for (i = 0; i < ORDER.length; i++) {
        if (caps[ORDER[i]]) {
          out.push(ORDER[i]);
        }
      }
      return out;
    },
    /* The payload of an event as bytes (Uint8Array where there is one). */
    bytes: function (ev) {
      var i, out;
      if (ev.base64) {
        return fromBase64(ev.data);
      }
      var bin = unescape(encodeURIComponent(ev.data || ''));
      out = win.Uint8Array ? new win.Uint8Array(bin.length) : [];
      for (i = 0; i < bin.length; i++) {
        out[i] = bin.charCodeAt(i);
      }
      return out;
    },
    /* A JSON request to a tandem route (the co-browsing pages' API): the
       body sent as JSON, cb(err, res) with the parsed answer, err null on a
       2xx or {status, message} from tandem's {"error": ...} otherwise. */
    json: function (method, url, body, cb) {
      var xhr = newXhr();
      xhr.open(method, url, true);
      if (body) { xhr.setRequestHeader('Content-Type', 'application/json'); }
      xhr.onreadystatechange = function () {
        if (xhr.readyState !== 4) { return; }
        var res = null;
        try { res = JSON.parse(xhr.responseText); } catch (e) { res = null; }
        if (cb) {
          cb(xhr.status >= 200 && xhr.status < 300 ? null :
            {status: xhr.status, message: (res && res.error) || 'request failed'}, res);
        }
      };
      xhr.send(body ? JSON.stringify(body) : null);
    },
    Connection: Connection,
    // For tests: the stream readers on their own.
    _MultipartReader: MultipartReader,
    _SseReader: SseReader
  };

  win.tandem = tandem;
}(this));
