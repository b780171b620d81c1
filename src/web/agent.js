/*
 * agent.js: the agent console of tandem co-browsing (ES5, served at /agent).
 *
 * Sign in (a name and password, or the per-run key: the link the server
 * prints carries it in the #fragment, which is read here, removed from the
 * address bar at once, and never sent in a URL). Then the list of help
 * sessions arrives live on the `cb.console` channel; joining one opens the
 * customer's page in a frame that uses the customer's session on the site,
 * and the session's channel carries push, pull, follow, blinking links and
 * chat both ways. Everything from the other side is shown as text
 * (createTextNode), never as HTML.
 */
(function () {
  'use strict';
  window.tandemAgentConsole = true; // cobrowse.js in the view frame stays quiet
  window.tandemAgentBlinks = []; // the URLs of links blinked here (tests read it)
  var BLINK_MS = 250; // two flashes a second; at most three allowed
  var FLASHES = 3;
  var me = null;
  var consoleConn = null;
  var sessionConn = null;
  var current = null; // {id, channel, label, url}
  var sessions = [];
  var expected = null; // the URL the view is being sent to by us (no echo)
  var transport = (/[?&]transport=([a-z]+)/.exec(location.search) || [])[1] || 'auto';

  function $(id) { return document.getElementById(id); }
  function show(id, on) { $(id).style.display = on ? '' : 'none'; }
  function setText(e, text) {
    while (e.firstChild) { e.removeChild(e.firstChild); }
    e.appendChild(document.createTextNode(text));
  }
  function announce(text) {
    setText($('live'), '');
    setTimeout(function () { setText($('live'), text); }, 30);
  }
  // An error is shown on screen next to what failed (the element is a
  // role=alert, so screen readers hear it too) and cleared by the next
  // success there.
  function failed(id, what, err) { setText($(id), what + ': ' + err.message); }
  function cleared(id) { setText($(id), ''); }
  // Where tandem's routes are: this page is {base}/agent, so behind the
  // proxy (tandem in front of an application) base is its prefix.
  var base = location.pathname.replace(/\/agent\/?$/, '');
  function request(method, path, body, cb) {
    window.tandem.json(method, base + path, body, cb);
  }
  function send(type, fields, cb) {
    var body = {type: type, session: current.id}, k;
    for (k in fields) { if (fields.hasOwnProperty(k)) { body[k] = fields[k]; } }
    request('POST', '/cobrowse/event', body, cb || function (err) {
      if (err) { failed('session-error', 'Not sent', err); } else { cleared('session-error'); }
    });
  }
  function reducedMotion() {
    return !!(window.matchMedia && window.matchMedia('(prefers-reduced-motion: reduce)').matches);
  }

  /* ---- sign-in ---- */
  function signIn(name, secret) {
    request('POST', '/agent/signin', {name: name, key: secret}, function (err, res) {
      if (err) { setText($('signin-error'), err.message); show('signin', true); return; }
      start(res.name);
    });
  }
  $('signin-form').onsubmit = function () {
    setText($('signin-error'), '');
    signIn($('signin-name').value, $('signin-secret').value);
    $('signin-secret').value = '';
    return false;
  };
  $('signout').onclick = function () {
    request('POST', '/agent/signout', {}, function () { location.replace(base + '/agent'); });
  };

  function start(name) {
    me = name;
    setText($('me'), 'Signed in as ' + name);
    show('signin', false);
    var again = null;
    try { again = sessionStorage.getItem('tandem.agent.session'); } catch (e) { again = null; }
    if (again) { join({session: again}, true); } else { showList(); }
  }

  /* ---- the live list ---- */
  function age(ms) {
    var s = Math.max(0, Math.floor((new Date().getTime() - ms) / 1000));
    return s < 60 ? s + ' s' : Math.floor(s / 60) + ' min ' + (s % 60) + ' s';
  }
  function cell(tr, text, id) {
    var td = document.createElement('td');
    if (id) { td.id = id; }
    td.appendChild(document.createTextNode(text));
    tr.appendChild(td);
    return td;
  }
  function renderList() {
    var rows = $('rows'), i;
    while (rows.firstChild) { rows.removeChild(rows.firstChild); }
    for (i = 0; i < sessions.length; i++) {
      (function (s) {
        var tr = document.createElement('tr');
        tr.className = 'session-row';
        tr.setAttribute('data-id', s.id);
        cell(tr, s.label);
        cell(tr, s.online ? 'online' : 'gone (page closed)', 'presence-' + s.id).className = 'presence ' + (s.online ? 'online' : 'gone');
        cell(tr, (s.title ? s.title + ' — ' : '') + s.url);
        cell(tr, s.message || '');
        cell(tr, age(s.created), 'age-' + s.id).className = 'age';
        cell(tr, s.state + (s.agents.length ? ' (' + s.agents.join(', ') + ')' : ''));
        var td = document.createElement('td'), b = document.createElement('button');
        b.type = 'button';
        b.className = 'join';
        b.appendChild(document.createTextNode(s.agents.indexOf(me) >= 0 ? 'Open' : 'Join'));
        b.setAttribute('aria-label', 'Join the session with ' + s.label);
        b.onclick = function () { join({session: s.id}); };
        td.appendChild(b);
        tr.appendChild(td);
        rows.appendChild(tr);
      }(sessions[i]));
    }
    setText($('list-status'), sessions.length ? sessions.length + ' help session(s)' : 'No one is waiting.');
    presence();
  }
  // The customer of the open session: online, or gone (their page closed).
  function presence() {
    if (!current) { return; }
    for (var i = 0; i < sessions.length; i++) {
      if (sessions[i].id === current.id) {
        setText($('session-presence'), sessions[i].online ? current.label + ' is online.' : current.label + ' is gone: their page is closed.');
        $('session-presence').className = sessions[i].online ? 'online' : 'gone';
      }
    }
  }
  setInterval(function () {
    for (var i = 0; i < sessions.length; i++) {
      var td = $('age-' + sessions[i].id);
      if (td) { setText(td, age(sessions[i].created)); }
    }
  }, 1000);

  function showList() {
    show('session', false);
    show('console', true);
    watchList();
  }
  // The list, fetched and then kept live (also while a session is open: it
  // says whether the customer is still online).
  function watchList() {
    request('GET', '/cobrowse/sessions', null, function (err, res) {
      if (err) {
        if (!current) { show('console', false); show('signin', true); }
        return;
      }
      var before = sessions.length;
      sessions = res.sessions;
      renderList();
      if (consoleConn) { return; }
      consoleConn = window.tandem.connect(res.channel, {
        base: base,
        since: res.since,
        transport: transport,
        onEvent: function (ev) {
          if (ev.type !== 'sessions') { return; }
          var d = JSON.parse(ev.data);
          if (d.sessions.length > sessions.length) { announce('A customer asks for help.'); }
          sessions = d.sessions;
          renderList();
        }
      });
      if (before !== sessions.length && sessions.length) { announce(sessions.length + ' help session(s)'); }
    });
  }

  $('code-form').onsubmit = function () {
    setText($('code-error'), '');
    join({code: $('code').value});
    return false;
  };

  /* ---- one session ---- */
  function join(what, quiet) {
    request('POST', '/cobrowse/join', what, function (err, res) {
      if (err) {
        try { sessionStorage.removeItem('tandem.agent.session'); } catch (e) { /* ignore */ }
        if (what.code) { setText($('code-error'), err.message); } else if (!quiet) { failed('list-error', 'Could not join', err); }
        showList();
        return;
      }
      cleared('list-error');
      cleared('code-error');
      open(res);
    });
  }

  function open(s) {
    current = {id: s.id, channel: s.channel, label: s.label, url: s.url, canControl: !!s.can_control, control: !!s.control};
    try { sessionStorage.setItem('tandem.agent.session', s.id); } catch (e) { /* ignore */ }
    show('console', false);
    show('session', true);
    setText($('session-label'), s.label);
    setText($('session-state'), 'Joined. Agents: ' + s.agents.join(', ') + '. The customer sees that you are assisting.');
    setText($('session-presence'), s.online === false ? s.label + ' is gone: their page is closed.' : s.label + ' is online.');
    showControl();
    watchList();
    cleared('session-error');
    cleared('push-error');
    cleared('chat-error');
    while ($('log').firstChild) { $('log').removeChild($('log').firstChild); }
    if (s.message) { line(0, s.label, s.message); }
    for (var i = 0; s.chat && i < s.chat.length; i++) { line(s.chat[i].n, chatWho(s.chat[i]), s.chat[i].text); }
    goView(s.url);
    if (sessionConn) { sessionConn.close(); }
    sessionConn = window.tandem.connect(s.channel, {
      base: base,
      since: s.since,
      client: 'agent:' + me,
      transport: transport,
      onEvent: onEvent
    });
    request('GET', '/cobrowse/canned', null, function (err, res) {
      if (err) { return; }
      var sel = $('canned'), i;
      while (sel.firstChild) { sel.removeChild(sel.firstChild); }
      for (i = 0; i < res.replies.length; i++) {
        var o = document.createElement('option');
        o.value = res.replies[i];
        o.appendChild(document.createTextNode(res.replies[i]));
        sel.appendChild(o);
      }
    });
    try { $('chat-text').focus(); } catch (e) { /* ignore */ }
  }

  // Proxy mode: the view has the customer's session; what it may send.
  function showControl() {
    if (!current.canControl) { setText($('session-control'), ''); return; }
    setText($('session-control'), current.control ?
      current.label + ' lets you act for them: forms in the view reach the site.' :
      'View only: ' + current.label + ' has not let you act for them (forms that send data are refused).');
  }

  function close(message) {
    if (sessionConn) { sessionConn.close(); sessionConn = null; }
    try { sessionStorage.removeItem('tandem.agent.session'); } catch (e) { /* ignore */ }
    current = null;
    if (message) { announce(message); }
    showList();
  }

  // A chat line in its place by its number `n` (0 for the customer's
  // message with the request), once however often it arrives: from the
  // session's kept chat on joining (or reopening), from the channel, from
  // the answer to our own send.
  function line(n, who, text) {
    var log = $('log'), lines = log.childNodes, i, p, b;
    for (i = 0; i < lines.length; i++) {
      if (+lines[i].getAttribute('data-n') === n) { return; }
    }
    p = document.createElement('p');
    b = document.createElement('b');
    p.className = 'chat-line';
    p.setAttribute('data-n', String(n));
    b.appendChild(document.createTextNode(who + ': '));
    p.appendChild(b);
    p.appendChild(document.createTextNode(text));
    for (i = 0; i < lines.length; i++) {
      if (+lines[i].getAttribute('data-n') > n) { break; }
    }
    log.insertBefore(p, i < lines.length ? lines[i] : null);
    log.scrollTop = log.scrollHeight;
  }
  function chatWho(l) {
    if (l.from === 'customer') { return current ? current.label : 'customer'; }
    return l.by === me ? 'You' : l.by;
  }

  /* ---- the view: the customer's page with the customer's session ---- */
  // Each page of the view names the session it shows in its query
  // (tandem_view=ID): the server then serves it with that customer's session
  // on the site, if this agent joined it. A parameter per page, not a
  // cookie, so each tab of the console shows its own customer.
  var VIEW = 'tandem_view';
  function splitHash(url) {
    var i = url.indexOf('#');
    return i < 0 ? [url, ''] : [url.slice(0, i), url.slice(i)];
  }
  function withoutView(url) {
    var h = splitHash(url), q = h[0].indexOf('?'), kept = [], parts, j;
    if (q < 0) { return url; }
    parts = h[0].slice(q + 1).split('&');
    for (j = 0; j < parts.length; j++) {
      if (parts[j] !== '' && parts[j].split('=')[0] !== VIEW) { kept.push(parts[j]); }
    }
    return h[0].slice(0, q) + (kept.length ? '?' + kept.join('&') : '') + h[1];
  }
  function withView(url) {
    var h = splitHash(withoutView(url));
    return h[0] + (h[0].indexOf('?') >= 0 ? '&' : '?') + VIEW + '=' + encodeURIComponent(current.id) + h[1];
  }
  var fixes = 0; // reloads of pages that came without the parameter, in a row
  function viewPath() {
    try {
      var l = $('view').contentWindow.location;
      return l.pathname + l.search + l.hash;
    } catch (e) { return null; }
  }
  function goView(url) {
    url = withView(url);
    expected = withoutView(url);
    try { $('view').contentWindow.location.replace(url); } catch (e) { $('view').src = url; }
  }
  function blink(els, done) {
    var n = 0, total = FLASHES * 2, i;
    function paint(on, steady) {
      for (i = 0; i < els.length; i++) {
        els[i].style.outline = on ? '3px solid #d63384' : '';
        els[i].style.background = on && !steady ? '#ffe3f1' : '';
      }
    }
    if (els.length) { window.tandemAgentBlinks.push(els[0].getAttribute('href')); }
    if (!els.length) { setTimeout(done, 100); return; }
    if (reducedMotion()) {
      paint(true, true);
      setTimeout(function () { paint(false); done(); }, BLINK_MS * total);
      return;
    }
    function step() {
      paint(n % 2 === 0);
      n++;
      if (n < total) { setTimeout(step, BLINK_MS); } else { paint(false); done(); }
    }
    step();
  }
  function linksIn(doc, url) {
    var all = doc.getElementsByTagName('a'), out = [], i, x = doc.createElement('a');
    x.href = url;
    for (i = 0; i < all.length; i++) {
      if (all[i].getAttribute('href') !== null && all[i].href === x.href) { out.push(all[i]); }
    }
    return out;
  }
  $('view').onload = function () {
    var raw = viewPath(), path, doc, i, forms, input;
    if (!current || raw === null) { return; }
    path = withoutView(raw);
    setText($('view-url'), path);
    current.url = path;
    var refused = false;
    try { refused = $('view').contentWindow.document.contentType === 'application/json'; } catch (e) { refused = false; }
    if (path !== expected && !refused) {
      // The agent moved in the view (a link, a form): the customer follows.
      send('nav', {url: path, title: ($('view').contentWindow.document.title || '').slice(0, 200)});
    }
    expected = null;
    if (raw !== withView(raw)) {
      // A page that came without naming the session (a redirect, say):
      // load it again as this session's, once.
      if (fixes++ < 1) { goView(path); return; }
    }
    fixes = 0;
    try { doc = $('view').contentWindow.document; } catch (e) { return; }
    // Forms of the page stay in this session's view too.
    forms = doc.getElementsByTagName('form');
    for (i = 0; i < forms.length; i++) {
      if ((forms[i].getAttribute('method') || 'get').toLowerCase() === 'get') {
        input = doc.createElement('input');
        input.type = 'hidden';
        input.name = VIEW;
        input.value = current.id;
        forms[i].appendChild(input);
      } else {
        var a = doc.createElement('a');
        a.href = forms[i].getAttribute('action') || raw;
        if (a.host === location.host) { forms[i].setAttribute('action', withView(a.pathname + a.search + a.hash)); }
      }
    }
    // Behind the proxy, a form that sends data goes only with the
    // customer's leave (the server refuses it too): say so here rather
    // than show the refusal in the view.
    doc.addEventListener('submit', function (e) {
      var f = e.target, m = ((f && f.getAttribute('method')) || 'get').toLowerCase();
      if (m === 'get' || !current || !current.canControl || current.control) { return; }
      e.preventDefault();
      setText($('session-error'), 'Not sent: ' + current.label + ' has not let you act for them. Ask them to choose “Let the agent act for me”.');
    }, false);
    $('view').contentWindow.tandemHooked = true; // clicks here are shared (tests wait for it)
    doc.addEventListener('click', function (e) {
      if (e.defaultPrevented || e.button || e.ctrlKey || e.metaKey || e.shiftKey || e.altKey) { return; }
      var a = e.target;
      while (a && a.nodeName !== 'A') { a = a.parentNode; }
      if (!a || !a.href) { return; }
      var x = doc.createElement('a');
      x.href = a.href;
      if (x.host !== location.host) { return; }
      e.preventDefault();
      var url = withoutView(x.pathname + x.search + x.hash);
      send('click', {url: url, text: (a.textContent || '').replace(/\s+/g, ' ').slice(0, 200)});
      blink([a], function () { goView(url); });
    }, false);
  };

  function onEvent(ev) {
    if (ev.type === 'gap' || !current) { return; }
    var d = {};
    try { d = JSON.parse(ev.data); } catch (e) { return; }
    switch (ev.type) {
    case 'joined':
      setText($('session-state'), d.agent + ' joined.');
      break;
    case 'nav':
      // The customer's page changed (or reloaded): the view follows and refreshes.
      if (ev.from === 'customer') {
        // The status says where the customer is now (no stale "pulled" line).
        setText($('session-state'), 'The customer is on ' + d.url);
        goView(d.url);
      }
      break;
    case 'pulled':
      announce('The customer is on ' + d.url);
      setText($('session-state'), 'Pulled: the customer is on ' + d.url);
      goView(d.url);
      break;
    case 'click':
      announce(d.by + ' clicked the link “' + (d.text || d.url) + '”');
      var doc = null;
      try { doc = $('view').contentWindow.document; } catch (e) { doc = null; }
      blink(doc ? linksIn(doc, d.url) : [], function () { goView(d.url); });
      break;
    case 'chat':
      line(d.n, chatWho({from: ev.from, by: d.by}), d.text);
      if (ev.from === 'customer') { announce('The customer says: ' + d.text); }
      break;
    case 'control':
      current.control = !!d.granted;
      showControl();
      if (current.control) { cleared('session-error'); }
      announce(current.control ? current.label + ' lets you act for them.' : current.label + ' took back control.');
      break;
    case 'end':
      close('The session was ended by ' + d.by + '.');
      break;
    }
  }

  $('push-form').onsubmit = function () {
    send('push', {url: $('push-url').value}, function (err) {
      if (err) { failed('push-error', 'Not pushed', err); return; }
      cleared('push-error');
      announce('Pushed ' + $('push-url').value);
    });
    return false;
  };
  $('pull').onclick = function () { send('pull', {}); };
  function chat(text) {
    if (!text) { return; }
    send('chat', {text: text}, function (err, res) {
      if (err) { failed('chat-error', 'Not sent', err); return; }
      cleared('chat-error');
      line(res.n, 'You', text);
    });
  }
  $('chat-form').onsubmit = function () { chat($('chat-text').value); $('chat-text').value = ''; return false; };
  $('canned-send').onclick = function () { chat($('canned').value); };
  $('end').onclick = function () {
    send('end', {}, function (err) {
      if (err && err.status !== 404 && err.status !== 403) { failed('session-error', 'Not ended', err); return; }
      close('You ended the session.');
    });
  };
  $('back').onclick = function () { close(); };

  /* ---- start ---- */
  var key = /[#&]key=([^&]+)/.exec(location.hash);
  if (key) {
    // Out of the address bar (and history) before anything else happens.
    if (window.history && history.replaceState) { history.replaceState(null, '', location.pathname + location.search); } else { location.hash = ''; }
    signIn($('signin-name').value || 'agent', decodeURIComponent(key[1]));
  } else {
    request('GET', '/agent/me', null, function (err, res) {
      if (err) { show('signin', true); try { $('signin-name').focus(); } catch (e) { /* ignore */ } return; }
      start(res.name);
    });
  }
}());
