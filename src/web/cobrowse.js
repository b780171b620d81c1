/*
 * cobrowse.js: the customer's side of tandem co-browsing (ES5, no build step).
 *
 * Add one tag after tandem.js to every page of a site:
 *
 *   <script src="/tandem.js"></script><script src="/cobrowse.js"></script>
 *
 * Every page then shows a small "Get help" control. Nothing is shared until
 * the customer asks for help; then the customer is told what is shared, sees
 * that they wait, who joined, a visible "you are being assisted" state, and
 * an End button that works at any moment. While a session lasts, the pages
 * the customer opens on this site, the links they click (which blink on both
 * sides first) and the chat go to the agents who joined; the agents can send
 * the customer to a page (push) or ask for the current one (pull).
 *
 * The credential is an HttpOnly cookie set by the server, which this script
 * never sees; sessionStorage only remembers that this tab is in a session and
 * the id of the last event handled, so a navigation or reload resumes without
 * losing or repeating an event. The chat so far comes with the session on
 * each page (the server keeps it), its lines numbered so none shows twice. Text from the other side is only ever set
 * with textContent / createTextNode, never parsed as HTML.
 *
 * Options (set before the script): window.TANDEM_COBROWSE = {base: (the
 * path this script was loaded from, e.g. '/_tandem' behind the proxy),
 * transport: 'auto', name: ''}; the transport can also be pinned for a tab
 * with sessionStorage 'tandem.cobrowse.transport' (tests force long-poll
 * so). The customer's name, which the agent sees in the list and the chat,
 * comes from `name`, or the script tag's data-name attribute (the
 * application knows who is signed in), or the customer types it when
 * asking. While a session lasts the page pings the server (presence), so a
 * closed page shows as gone in the console.
 */
(function boot() {
  'use strict';
  // Put in a page's head (tandem in front of an application injects it
  // there): start once the body exists.
  if (!document.body) {
    if (document.addEventListener) {
      document.addEventListener('DOMContentLoaded', function () { boot(); }, false);
    } else if (window.attachEvent) {
      window.attachEvent('onload', function () { boot(); });
    }
    return;
  }
  if (window.tandemCobrowse || !window.tandem) { return; }
  // Inside the agent console's view of the customer's page: the agent's
  // console does the co-browsing there, so no widget and no session here.
  try { if (window.parent !== window && window.parent.tandemAgentConsole) { return; } } catch (e) { /* another origin */ }

  var opts = window.TANDEM_COBROWSE || {};
  // Where tandem's routes are: the option, or the path this script came
  // from (`/_tandem/cobrowse.js` behind the proxy: base `/_tandem`).
  function scriptBase() {
    var scripts = document.getElementsByTagName('script'), i, m;
    for (i = 0; i < scripts.length; i++) {
      m = /^((?:\/[^\/?#]+)*)\/cobrowse\.js(?:[?#]|$)/.exec(scripts[i].getAttribute('src') || '');
      if (m) { return m[1]; }
    }
    return '';
  }
  var base = opts.base || scriptBase();
  var pinger = null;
  function givenName() {
    if (opts.name) { return String(opts.name); }
    var scripts = document.getElementsByTagName('script'), i;
    for (i = 0; i < scripts.length; i++) {
      if (/cobrowse\.js(\?|$)/.test(scripts[i].getAttribute('src') || '') && scripts[i].getAttribute('data-name')) {
        return scripts[i].getAttribute('data-name');
      }
    }
    return '';
  }
  var KEY = 'tandem.cobrowse';
  var BLINK_MS = 250; // on 250 ms, off 250 ms: two flashes a second (at most 3 allowed)
  var FLASHES = 3;
  var store = window.sessionStorage || null;
  var state = null; // {id, channel, since, agents: []}
  var conn = null;
  var ui = {};
  var leaving = false;

  function load() {
    try { return JSON.parse(store && store.getItem(KEY)); } catch (e) { return null; }
  }
  function save() {
    try {
      if (!store) { return; }
      if (state) { store.setItem(KEY, JSON.stringify(state)); } else { store.removeItem(KEY); }
    } catch (e) { /* private mode: the session then lasts one page */ }
  }
  function transport() {
    var t = null;
    try { t = store && store.getItem('tandem.cobrowse.transport'); } catch (e) { t = null; }
    return t || opts.transport || 'auto';
  }
  function here() { return location.pathname + location.search + location.hash; }
  function reducedMotion() {
    return !!(window.matchMedia && window.matchMedia('(prefers-reduced-motion: reduce)').matches);
  }

  /* ---- requests ---- */
  function request(method, path, body, cb) {
    window.tandem.json(method, base + path, body, cb);
  }
  function send(type, fields, cb) {
    var body = {type: type}, k;
    for (k in fields) { if (fields.hasOwnProperty(k)) { body[k] = fields[k]; } }
    request('POST', '/cobrowse/event', body, cb);
  }

  /* ---- the widget ---- */
  function el(tag, attrs, text) {
    var e = document.createElement(tag), k;
    for (k in attrs) { if (attrs.hasOwnProperty(k)) { e.setAttribute(k, attrs[k]); } }
    if (text) { e.appendChild(document.createTextNode(text)); }
    return e;
  }
  function setText(e, text) {
    while (e.firstChild) { e.removeChild(e.firstChild); }
    e.appendChild(document.createTextNode(text));
  }
  function show(e, on) { e.style.display = on ? '' : 'none'; }

  function build() {
    var css = el('style', {}, '#tandem-cobrowse{position:fixed;right:1em;bottom:1em;z-index:2147483000;' +
      'font:15px/1.4 system-ui,sans-serif;color:#222;max-width:22em}' +
      '#tandem-cobrowse .tcb-panel{background:#fff;border:2px solid #0a58ca;border-radius:6px;padding:.7em;margin-bottom:.4em;box-shadow:0 2px 8px rgba(0,0,0,.2)}' +
      '#tandem-cobrowse button{font:inherit;padding:.3em .8em;margin:.2em .2em 0 0;cursor:pointer}' +
      '#tandem-cobrowse button:focus,#tandem-cobrowse input:focus{outline:3px solid #ffbf47;outline-offset:1px}' +
      '#tcb-toggle{background:#0a58ca;color:#fff;border:0;border-radius:4px}' +
      '#tcb-assisted{background:#d1e7dd;color:#0f5132;font-weight:bold;padding:.3em;margin:0 0 .4em}' +
      '#tcb-log{max-height:10em;overflow:auto;border:1px solid #ccc;padding:.3em;margin:.4em 0;background:#fafafa}' +
      '#tcb-log p{margin:.1em 0}#tcb-code-value{font-size:1.4em;letter-spacing:.2em;font-weight:bold}' +
      '.tcb-error{color:#b02a37;font-weight:bold}.tcb-error:empty{display:none}' +
      '.tcb-hidden{position:absolute;left:-10000px;width:1px;height:1px;overflow:hidden}' +
      '.tandem-blink{outline:3px solid #d63384 !important;background:#ffe3f1 !important;color:#6b0036 !important}' +
      '.tandem-marked{outline:3px solid #d63384 !important;outline-offset:2px}' +
      '#tandem-cobrowse .tcb-h{font-size:1em;margin:.6em 0 .2em}#tandem-cobrowse .tcb-big{font-size:1.4em;letter-spacing:.1em;font-weight:bold}' +
      '#tcb-class-error{color:#842029;background:#f8d7da;border:1px solid #842029;padding:.3em;margin:.4em 0}' +
      '#tcb-class-followers{max-height:10em;overflow:auto;margin:.3em 0;padding-left:1.2em}#tcb-class-link{width:100%}' +
      '#tcb-following{position:fixed;top:0;left:0;right:0;background:#0a58ca;color:#fff;font-weight:bold;text-align:center;padding:.3em;z-index:2147483000}');
    document.getElementsByTagName('head')[0].appendChild(css);

    var root = el('div', {id: 'tandem-cobrowse', role: 'region', 'aria-label': 'Help from an agent'});
    var panel = el('div', {id: 'tcb-panel', 'class': 'tcb-panel'});
    ui.live = el('div', {id: 'tcb-live', 'class': 'tcb-hidden', 'aria-live': 'assertive', role: 'status'});
    ui.toggle = el('button', {id: 'tcb-toggle', type: 'button', 'aria-expanded': 'false', 'aria-controls': 'tcb-panel'}, 'Get help');

    /* asking */
    ui.ask = el('div', {id: 'tcb-ask'});
    ui.ask.appendChild(el('p', {}, 'An agent can help you on this site. If you ask, the agent sees the address and ' +
      'title of the pages of this site you open, the links you click, your session on this site (like your cart), ' +
      'and the chat, until you end. Nothing is shared before you ask; other tabs, other sites, what you type into ' +
      'forms and your passwords are never shared.'));
    var nameLabel = el('label', {'for': 'tcb-name'}, 'Your name (optional, the agent sees it)');
    ui.name = el('input', {id: 'tcb-name', type: 'text', maxlength: '64', autocomplete: 'name'});
    ui.name.value = givenName().slice(0, 64);
    ui.ask.appendChild(nameLabel);
    ui.ask.appendChild(el('br'));
    ui.ask.appendChild(ui.name);
    ui.ask.appendChild(el('br'));
    var label = el('label', {'for': 'tcb-message'}, 'What do you need help with? (optional)');
    ui.message = el('input', {id: 'tcb-message', type: 'text', maxlength: '500', autocomplete: 'off'});
    ui.askButton = el('button', {id: 'tcb-ask-button', type: 'button'}, 'Ask for help');
    ui.ask.appendChild(label);
    ui.ask.appendChild(el('br'));
    ui.ask.appendChild(ui.message);
    ui.ask.appendChild(el('br'));
    ui.ask.appendChild(ui.askButton);

    /* in a session */
    ui.session = el('div', {id: 'tcb-session'});
    ui.assisted = el('p', {id: 'tcb-assisted'}, 'You are being assisted');
    ui.status = el('p', {id: 'tcb-status', role: 'status', 'aria-live': 'polite'}, 'Waiting for an agent…');
    ui.shared = el('p', {id: 'tcb-shared'}, 'Shared with the agent: the pages of this site you open, the links you ' +
      'click, your session on this site, and this chat.');
    // Proxy mode: the agent's view has the customer's session, and sends
    // forms only while the customer lets it.
    ui.control = el('button', {id: 'tcb-control', type: 'button'}, 'Let the agent act for me');
    ui.controlState = el('p', {id: 'tcb-control-state', role: 'status'});
    ui.error = el('p', {id: 'tcb-error', 'class': 'tcb-error', role: 'alert'});
    ui.codeButton = el('button', {id: 'tcb-code', type: 'button'}, 'Show a code for phone support');
    ui.codeValue = el('p', {id: 'tcb-code-value', 'aria-live': 'polite'});
    ui.log = el('div', {id: 'tcb-log', role: 'log', 'aria-label': 'Chat with the agent'});
    ui.chatForm = el('form', {id: 'tcb-chat'});
    var chatLabel = el('label', {'for': 'tcb-chat-text', 'class': 'tcb-hidden'}, 'Message to the agent');
    ui.chatText = el('input', {id: 'tcb-chat-text', type: 'text', maxlength: '2000', autocomplete: 'off', placeholder: 'Write to the agent'});
    ui.chatSend = el('button', {id: 'tcb-chat-send', type: 'submit'}, 'Send');
    ui.chatForm.appendChild(chatLabel);
    ui.chatForm.appendChild(ui.chatText);
    ui.chatForm.appendChild(ui.chatSend);
    ui.end = el('button', {id: 'tcb-end', type: 'button'}, 'End help session');
    ui.session.appendChild(ui.assisted);
    ui.session.appendChild(ui.status);
    ui.session.appendChild(ui.shared);
    ui.session.appendChild(ui.controlState);
    ui.session.appendChild(ui.control);
    ui.session.appendChild(ui.error);
    ui.session.appendChild(ui.codeButton);
    ui.session.appendChild(ui.codeValue);
    ui.session.appendChild(ui.log);
    ui.session.appendChild(ui.chatForm);
    ui.session.appendChild(ui.end);

    ui.ended = el('p', {id: 'tcb-ended'}, 'The help session has ended.');

    panel.appendChild(ui.ask);
    panel.appendChild(ui.session);
    panel.appendChild(ui.ended);
    root.appendChild(panel);
    root.appendChild(ui.toggle);
    root.appendChild(ui.live);
    buildClass(panel, root);
    document.body.appendChild(root);
    ui.panel = panel;

    ui.toggle.onclick = function () { open(ui.panel.style.display === 'none'); };
    ui.askButton.onclick = ask;
    ui.end.onclick = end;
    ui.codeButton.onclick = code;
    ui.control.onclick = control;
    ui.chatForm.onsubmit = function () { chat(); return false; };
    render();
  }

  function open(on) {
    show(ui.panel, on);
    if (state && state.open !== on) { state.open = on; save(); }
    ui.toggle.setAttribute('aria-expanded', on ? 'true' : 'false');
    if (on) {
      var f = state ? ui.chatText : ui.message;
      if (!ui.ended.style.display || ui.ended.style.display === 'none') { try { f.focus(); } catch (e) { /* hidden */ } }
    }
  }

  function render(ended) {
    show(ui.ask, !state && !ended && !klass);
    if (ui.classStart) { show(ui.classStart, !state && !klass); }
    show(ui.session, !!state);
    show(ui.ended, !!ended && !state);
    if (!state) {
      setText(ui.toggle, 'Get help');
      if (!ended) { open(false); }
      return;
    }
    var agents = state.agents || [];
    show(ui.control, !!state.canControl);
    show(ui.controlState, !!state.canControl);
    if (state.canControl) {
      setText(ui.control, state.control ? 'Take back control' : 'Let the agent act for me');
      setText(ui.controlState, state.control ?
        'The agent can act for you on this site (send forms) until you take back control.' :
        'The agent can only look: nothing is sent to this site for you.');
    }
    show(ui.assisted, agents.length > 0);
    show(ui.chatForm, true);
    if (agents.length) {
      setText(ui.assisted, 'You are being assisted by ' + agents.join(', '));
      setText(ui.status, 'Connected. The agent sees the pages of this site you open.');
      setText(ui.toggle, 'Help: assisted');
    } else {
      setText(ui.status, 'Waiting for an agent… You can keep using the site.');
      setText(ui.toggle, 'Help: waiting');
    }
  }

  function announce(text) {
    // Re-set the text so screen readers announce a repeat too.
    setText(ui.live, '');
    setTimeout(function () { setText(ui.live, text); }, 30);
  }

  // A chat line, in its place by its number `n` (the server numbers the
  // lines of a session), shown once however often it arrives: from the
  // session's kept chat when a page loads, from the channel, from the answer
  // to our own send.
  function logLine(n, who, text) {
    var lines = ui.log.childNodes, i, p, b;
    for (i = 0; i < lines.length; i++) {
      if (+lines[i].getAttribute('data-n') === n) { return; }
    }
    p = el('p', {'class': 'tcb-line', 'data-n': String(n)});
    b = el('b', {}, who + ': ');
    p.appendChild(b);
    p.appendChild(document.createTextNode(text));
    for (i = 0; i < lines.length; i++) {
      if (+lines[i].getAttribute('data-n') > n) { break; }
    }
    ui.log.insertBefore(p, i < lines.length ? lines[i] : null);
    ui.log.scrollTop = ui.log.scrollHeight;
  }
  function chatWho(line) { return line.from === 'customer' ? 'You' : line.by; }
  function showChat(lines) {
    for (var i = 0; lines && i < lines.length; i++) { logLine(lines[i].n, chatWho(lines[i]), lines[i].text); }
  }

  /* ---- actions ---- */
  function ask() {
    ui.askButton.disabled = true;
    request('POST', '/cobrowse/session', {url: here(), title: document.title.slice(0, 200), message: ui.message.value, label: ui.name.value}, function (err, res) {
      ui.askButton.disabled = false;
      if (err) { setText(ui.error, 'Could not ask for help: ' + err.message); announce('Could not ask for help: ' + err.message); return; }
      setText(ui.error, '');
      state = {id: res.id, channel: res.channel, since: res.since, agents: res.agents || [], pingEvery: res.ping_every,
        canControl: !!res.can_control, control: !!res.control};
      // A new session numbers its lines from 1 again: none of an old one stays.
      while (ui.log.firstChild) { ui.log.removeChild(ui.log.firstChild); }
      showChat(res.chat);
      save();
      render();
      open(true);
      announce('You asked for help. Waiting for an agent.');
      connect();
    });
  }

  function control() {
    var granted = !state.control;
    ui.control.disabled = true;
    request('POST', '/cobrowse/control', {granted: granted}, function (err) {
      ui.control.disabled = false;
      if (err) { setText(ui.error, 'Control not changed: ' + err.message); return; }
      setText(ui.error, '');
      if (!state) { return; }
      state.control = granted;
      save();
      render();
      announce(granted ? 'The agent can now act for you.' : 'You took back control.');
    });
  }

  function end() {
    send('end', {}, function () { finish('You ended the help session.'); });
  }

  function finish(message) {
    if (pinger) { clearInterval(pinger); pinger = null; }
    state = null;
    save();
    if (conn) { conn.close(); conn = null; }
    render(true);
    open(true);
    announce(message);
  }

  function code() {
    request('POST', '/cobrowse/session/code', {}, function (err, res) {
      if (err) { setText(ui.codeValue, err.message); return; }
      setText(ui.codeValue, res.code);
      announce('Your code is ' + res.code.split('').join(' ') + '. Tell it to the agent on the phone.');
    });
  }

  function chat(text) {
    text = text || ui.chatText.value;
    if (!text) { return; }
    ui.chatText.value = '';
    send('chat', {text: text}, function (err, res) {
      if (err) { announce('Not sent: ' + err.message); } else { logLine(res.n, 'You', text); }
    });
  }

  /* ---- blinking links (seed 002): both sides see what the other clicked ---- */
  function sameUrl(a, b) {
    var x = document.createElement('a'), y = document.createElement('a');
    x.href = a; y.href = b;
    return x.href === y.href;
  }
  function linksTo(url) {
    var all = document.getElementsByTagName('a'), out = [], i;
    for (i = 0; i < all.length; i++) {
      if (all[i].getAttribute('href') !== null && sameUrl(all[i].href, url)) { out.push(all[i]); }
    }
    return out;
  }
  function blink(els, done) {
    var i, n = 0, total = FLASHES * 2;
    if (els.length) { window.tandemCobrowse.blinks.push(els[0].getAttribute('href')); }
    if (!els.length) { if (done) { setTimeout(done, 100); } return; }
    if (reducedMotion()) {
      // No flashing at all: a steady outline for the same time.
      for (i = 0; i < els.length; i++) { els[i].className += ' tandem-marked'; }
      setTimeout(function () {
        for (var j = 0; j < els.length; j++) { els[j].className = els[j].className.replace(/ tandem-marked/g, ''); }
        if (done) { done(); }
      }, BLINK_MS * total);
      return;
    }
    function step() {
      for (i = 0; i < els.length; i++) {
        if (n % 2 === 0) { els[i].className += ' tandem-blink'; } else { els[i].className = els[i].className.replace(/ tandem-blink/g, ''); }
      }
      n++;
      if (n < total) { setTimeout(step, BLINK_MS); } else if (done) { done(); }
    }
    step();
  }
  function go(url) {
    leaving = true;
    if (sameUrl(url, location.href)) { location.reload(); } else { location.href = url; }
  }
  function linkText(a) {
    return (a.textContent || a.innerText || a.getAttribute('aria-label') || a.href || '').replace(/\s+/g, ' ').slice(0, 200);
  }

  // Clicks on links within the site, while an agent is with the customer:
  // blink here, tell the agents (whose copy blinks too), then both navigate.
  function onClick(e) {
    e = e || window.event;
    if (!state || !state.agents || !state.agents.length || leaving) { return; }
    if (e.defaultPrevented || e.button || e.ctrlKey || e.metaKey || e.shiftKey || e.altKey) { return; }
    var a = e.target || e.srcElement;
    while (a && a.nodeName !== 'A') { a = a.parentNode; }
    if (!a || !a.href || a.target === '_blank' || document.getElementById('tandem-cobrowse').contains(a)) { return; }
    var x = document.createElement('a');
    x.href = a.href;
    if (x.protocol !== location.protocol || x.host !== location.host) { return; }
    if (e.preventDefault) { e.preventDefault(); } else { e.returnValue = false; }
    var url = x.pathname.replace(/^([^\/])/, '/$1') + x.search + x.hash;
    send('click', {url: url, text: linkText(a)});
    blink([a], function () { go(url); });
  }

  /* ---- events from the agents ---- */
  function onEvent(ev) {
    if (!state) { return; }
    // Keep the connection's cursor (`EPOCH:ID`), gaps included: after a
    // reset the old ids mean nothing, and the next page must resume here.
    var cursor = this && this.cursor ? this.cursor() : null;
    if (cursor !== null) { state.since = cursor; save(); }
    if (ev.type === 'gap') { return; }
    var d = {};
    try { d = JSON.parse(ev.data); } catch (err) { return; }
    switch (ev.type) {
    case 'joined':
      if (!state.agents) { state.agents = []; }
      if (state.agents.indexOf(d.agent) < 0) { state.agents.push(d.agent); }
      save();
      render();
      open(true);
      announce(d.agent + ' joined. You are being assisted.');
      break;
    case 'push':
      announce(d.by + ' is sending you to ' + d.url);
      setTimeout(function () { go(d.url); }, 300);
      break;
    case 'pull':
      send('pulled', {url: here(), title: document.title.slice(0, 200)});
      announce(d.by + ' asked which page you are on; it was sent.');
      break;
    case 'click':
      announce(d.by + ' clicked the link “' + (d.text || d.url) + '”');
      blink(linksTo(d.url), function () { go(d.url); });
      break;
    case 'nav':
      if (!sameUrl(d.url, location.href)) { go(d.url); }
      break;
    case 'chat':
      if (ev.from === 'customer') { return; }
      logLine(d.n, d.by, d.text);
      announce(d.by + ' says: ' + d.text);
      if (ui.panel.style.display === 'none') { open(true); }
      break;
    case 'control':
      state.control = !!d.granted;
      save();
      render();
      break;
    case 'end':
      finish('The help session has ended.');
      break;
    }
  }

  // Presence: the page says it is still open, a few times per the server's
  // presence timeout; a closed page stops, and the console shows it gone.
  function ping() {
    if (!state) { return; }
    request('POST', '/cobrowse/session/ping', {}, function (err) {
      if (err && err.status === 404 && state) { finish('The help session has ended.'); }
    });
  }
  function connect() {
    if (!pinger && state) { pinger = setInterval(ping, Math.max(500, state.pingEvery || 15000)); }
    if (conn || !state) { return; }
    conn = window.tandem.connect(state.channel, {
      base: base,
      since: state.since,
      client: 'customer',
      transport: transport(),
      onEvent: onEvent,
      onStatus: function (status, info) { window.tandemCobrowse.status = status + ' ' + info.transport; }
    });
    window.tandemCobrowse.connection = conn;
  }

  // A page of a session: confirm it with the server, tell the agents where
  // the customer is now (they follow), and listen again from the last event.
  function resume() {
    request('GET', '/cobrowse/session', null, function (err, res) {
      if (err) { state = null; save(); render(); return; }
      state.agents = res.agents || [];
      state.pingEvery = res.ping_every;
      state.canControl = !!res.can_control;
      state.control = !!res.control;
      save();
      render();
      showChat(res.chat);
      send('nav', {url: here(), title: document.title.slice(0, 200)});
      connect();
    });
  }

  /* ---- classroom mode: a presenter leads, followers follow (see docs/cobrowse.md) ---- */
  // The class of this tab, as the server last told it: {id, channel, since,
  // role: 'presenter' | 'follower', me, name, presenter, url, control: {to,
  // name}, count, code?, link?, followers?, blinked: [...]}. The credential
  // is an HttpOnly cookie; sessionStorage only says this tab is in a class.
  var CLASS_KEY = 'tandem.class';
  var klass = null;
  var classConn = null;
  var pendingUrl = null; // where a blink is about to take this page

  function loadClass() {
    try { return JSON.parse(store && store.getItem(CLASS_KEY)); } catch (e) { return null; }
  }
  function saveClass() {
    try {
      if (!store) { return; }
      if (klass) { store.setItem(CLASS_KEY, JSON.stringify(klass)); } else { store.removeItem(CLASS_KEY); }
    } catch (e) { /* private mode: the class then lasts one page */ }
  }
  function classRequest(method, path, body, cb) { request(method, '/cobrowse/class' + path, body, cb); }
  // Whether this page leads the class now.
  function steering() {
    if (!klass || !klass.control) { return false; }
    return klass.role === 'presenter' ? klass.control.to === null : klass.control.to === klass.me;
  }
  function classError(text) {
    // On screen (role=alert, so screen readers hear it too); the next
    // success clears it.
    setText(ui.classError, text || '');
    show(ui.classError, !!text);
    if (text) { open(true); }
  }
  function takeView(res) {
    var blinked = (klass && klass.blinked) || [];
    klass = res;
    klass.blinked = blinked;
    window.tandemCobrowse.blinks = blinked;
    saveClass();
  }

  function renderClass() {
    var inClass = !!klass;
    show(ui.classBox, inClass);
    show(ui.classStart, !inClass && !state);
    show(ui.banner, inClass);
    if (!inClass) { return; }
    show(ui.ask, false);
    var presenter = klass.role === 'presenter';
    var c = klass.control || {to: null, name: klass.presenter};
    show(ui.presenterBox, presenter);
    var who;
    if (steering()) {
      who = presenter ? 'You lead the class: everyone follows your pages.' : 'You have control: the class follows your pages.';
    } else {
      who = presenter ? c.name + ' has control; you follow until you take it back.' : c.name + ' leads; your page follows.';
    }
    setText(ui.classStatus, who);
    setText(ui.banner, presenter ? (steering() ? 'Presenting to ' + (klass.count || 0) + ' followers' : 'Following ' + c.name + ' (you gave control)') :
      (steering() ? 'You have control of the class' : 'Following ' + c.name));
    setText(ui.toggle, presenter ? 'Class: presenting' : 'Class: following');
    setText(ui.classLeave, presenter ? 'End class' : 'Leave class');
    if (!presenter) { return; }
    setText(ui.classCode, klass.code || '');
    ui.classLink.value = klass.link ? location.protocol + '//' + location.host + klass.link : '';
    setText(ui.classCount, (klass.count || 0) + ' following');
    show(ui.takeBack, c.to !== null);
    while (ui.followerList.firstChild) { ui.followerList.removeChild(ui.followerList.firstChild); }
    var list = klass.followers || [], i;
    for (i = 0; i < list.length; i++) {
      var li = el('li', {'data-id': list[i].id}, list[i].name + ' ');
      var b = el('button', {type: 'button', 'class': 'tcb-give', 'data-id': list[i].id},
        c.to === list[i].id ? 'Has control' : 'Give control');
      if (c.to === list[i].id) { b.disabled = true; }
      b.onclick = (function (id) { return function () { giveControl(id); }; }(list[i].id));
      li.appendChild(b);
      ui.followerList.appendChild(li);
    }
  }

  function startClass() {
    ui.classStartButton.disabled = true;
    classRequest('POST', '', {url: here(), title: document.title.slice(0, 200), name: ui.name.value}, function (err, res) {
      ui.classStartButton.disabled = false;
      if (err) { classError('Could not start a class: ' + err.message); return; }
      classError('');
      takeView(res);
      renderClass();
      open(true);
      announce('Your class is open. The code is ' + res.code + '.');
      classConnect();
    });
  }

  function joinClass(code) {
    code = code || ui.classCodeInput.value;
    if (!code) { classError('Type the code of the class.'); return; }
    ui.classJoinButton.disabled = true;
    classRequest('POST', '/join', {code: code, name: ui.name.value}, function (err, res) {
      ui.classJoinButton.disabled = false;
      if (err) { classError('Could not join: ' + err.message); return; }
      classError('');
      takeView(res);
      renderClass();
      announce('You joined the class of ' + res.presenter + '. Your page follows theirs.');
      classFollow();
    });
  }

  function giveControl(id) {
    classRequest('POST', '/control', {to: id}, function (err, res) {
      if (err) { classError('Control not handed: ' + err.message); return; }
      classError('');
      klass.control = res;
      saveClass();
      renderClass();
    });
  }

  function endClass() {
    classRequest('POST', '/end', {}, function (err) {
      if (err && err.status !== 401 && err.status !== 403) { classError('Not ended: ' + err.message); return; }
      classDone(klass && klass.role === 'presenter' ? 'You ended the class.' : 'You left the class.');
    });
  }

  function classDone(message) {
    klass = null;
    saveClass();
    if (classConn) { classConn.close(); classConn = null; }
    renderClass();
    render();
    classError('');
    setText(ui.classEnded, message);
    show(ui.classEnded, true);
    open(true);
    announce(message);
  }

  // This page and the class: the leader tells the class where it is; anyone
  // else goes to the class's page first if this is not it.
  function classFollow() {
    if (steering()) {
      classRequest('POST', '/event', {type: 'nav', url: here(), title: document.title.slice(0, 200)}, function (err) {
        if (err) { classError('Not shared with the class: ' + err.message); }
      });
    } else if (klass.url && !sameUrl(klass.url, location.href)) {
      go(klass.url);
      return;
    }
    classConnect();
  }

  function classConnect() {
    if (classConn || !klass) { return; }
    classConn = window.tandem.connect(klass.channel, {
      base: base,
      since: klass.since,
      client: klass.role === 'presenter' ? 'presenter' : 'follower:' + klass.me,
      transport: transport(),
      onEvent: onClassEvent,
      onStatus: function (status, info) { window.tandemCobrowse.status = status + ' ' + info.transport; }
    });
    window.tandemCobrowse.connection = classConn;
  }

  function onClassEvent(ev) {
    if (!klass) { return; }
    var cursor = this && this.cursor ? this.cursor() : null;
    if (cursor !== null) { klass.since = cursor; saveClass(); }
    if (ev.type === 'gap') { return; }
    var d = {};
    try { d = JSON.parse(ev.data); } catch (err) { return; }
    switch (ev.type) {
    case 'nav':
      klass.url = d.url;
      saveClass();
      if (steering() || leaving) { return; }
      if (pendingUrl && sameUrl(pendingUrl, d.url)) { return; }
      if (!sameUrl(d.url, location.href)) { go(d.url); }
      break;
    case 'click':
      klass.url = d.url;
      saveClass();
      if (steering() || leaving) { return; }
      announce(d.by + ' clicked the link “' + (d.text || d.url) + '”');
      pendingUrl = d.url;
      // blink() notes the link in tandemCobrowse.blinks, which is the
      // class's `blinked`, kept across the page load that follows.
      blink(linksTo(d.url), function () { go(d.url); });
      if (klass.blinked.length > 20) { klass.blinked.shift(); }
      saveClass();
      break;
    case 'control':
      klass.control = {to: d.to, name: d.name};
      saveClass();
      renderClass();
      announce(steering() ? 'You have control: the class follows your pages.' : d.name + ' has control now.');
      if (steering()) { classFollow(); }
      break;
    case 'joined':
      klass.count = d.count;
      if (klass.followers) { klass.followers.push({id: d.id, name: d.name}); }
      saveClass();
      renderClass();
      break;
    case 'left':
      klass.count = d.count;
      if (klass.followers) {
        for (var i = 0; i < klass.followers.length; i++) {
          if (klass.followers[i].id === d.id) { klass.followers.splice(i, 1); break; }
        }
      }
      saveClass();
      renderClass();
      break;
    case 'end':
      classDone('The class has ended.');
      break;
    }
  }

  // Link clicks in a class: the leader's blink here, go to the class, then
  // everyone navigates; anyone else's stay put (they do not steer).
  function onClassClick(e) {
    e = e || window.event;
    if (!klass || leaving) { return; }
    if (e.defaultPrevented || e.button || e.ctrlKey || e.metaKey || e.shiftKey || e.altKey) { return; }
    var a = e.target || e.srcElement;
    while (a && a.nodeName !== 'A') { a = a.parentNode; }
    if (!a || !a.href || a.target === '_blank' || document.getElementById('tandem-cobrowse').contains(a)) { return; }
    var x = document.createElement('a');
    x.href = a.href;
    if (x.protocol !== location.protocol || x.host !== location.host) { return; }
    if (e.preventDefault) { e.preventDefault(); } else { e.returnValue = false; }
    if (!steering()) {
      classError('You are following ' + ((klass.control && klass.control.name) || klass.presenter) +
        ': only the presenter (or who holds control) changes the page.');
      return;
    }
    var url = x.pathname.replace(/^([^\/])/, '/$1') + x.search + x.hash;
    classRequest('POST', '/event', {type: 'click', url: url, title: document.title.slice(0, 200), text: linkText(a)}, function (err) {
      if (err) { classError('Not shared with the class: ' + err.message); }
    });
    blink([a], function () { go(url); });
  }

  // A class's link: `#tandem-class=KEY`. The key leaves the address bar at
  // once; the join form opens with it filled in.
  function linkKey() {
    var m = /(^#|&)tandem-class=([A-Za-z0-9_\-]+)/.exec(location.hash || '');
    if (!m) { return null; }
    try {
      if (window.history && history.replaceState) {
        history.replaceState(history.state, '', location.pathname + location.search);
      }
    } catch (e) { /* old browsers keep it in the bar */ }
    return m[2];
  }

  function buildClass(panel, root) {
    ui.classError = el('p', {id: 'tcb-class-error', role: 'alert', 'class': 'tcb-error'});
    show(ui.classError, false);
    ui.classEnded = el('p', {id: 'tcb-class-ended'});
    show(ui.classEnded, false);

    ui.classStart = el('div', {id: 'tcb-class-start'});
    ui.classStart.appendChild(el('h2', {'class': 'tcb-h'}, 'Classroom'));
    ui.classStartButton = el('button', {id: 'tcb-class-start-button', type: 'button'}, 'Start a class');
    ui.classStart.appendChild(ui.classStartButton);
    ui.classStart.appendChild(el('p', {}, 'Or join one: everyone in a class sees the presenter\'s pages.'));
    ui.classJoinForm = el('form', {id: 'tcb-class-join'});
    ui.classJoinForm.appendChild(el('label', {'for': 'tcb-class-code'}, 'Class code'));
    ui.classCodeInput = el('input', {id: 'tcb-class-code', type: 'text', maxlength: '64', autocomplete: 'off', inputmode: 'numeric', placeholder: '123 456 789'});
    ui.classJoinButton = el('button', {id: 'tcb-class-join-button', type: 'submit'}, 'Join a class');
    ui.classJoinForm.appendChild(ui.classCodeInput);
    ui.classJoinForm.appendChild(ui.classJoinButton);
    ui.classStart.appendChild(ui.classJoinForm);

    ui.classBox = el('div', {id: 'tcb-class'});
    ui.classStatus = el('p', {id: 'tcb-class-status', role: 'status', 'aria-live': 'polite'});
    ui.presenterBox = el('div', {id: 'tcb-class-presenter'});
    var codeLine = el('p', {}, 'Code: ');
    ui.classCode = el('span', {id: 'tcb-class-code-value', 'class': 'tcb-big'});
    codeLine.appendChild(ui.classCode);
    var linkLabel = el('label', {'for': 'tcb-class-link'}, 'Link');
    ui.classLink = el('input', {id: 'tcb-class-link', type: 'text', readonly: 'readonly'});
    ui.classCount = el('p', {id: 'tcb-class-count', 'aria-live': 'polite'});
    ui.followerList = el('ul', {id: 'tcb-class-followers', 'aria-label': 'Followers: give one of them control'});
    ui.takeBack = el('button', {id: 'tcb-class-take-back', type: 'button'}, 'Take back control');
    ui.presenterBox.appendChild(codeLine);
    ui.presenterBox.appendChild(linkLabel);
    ui.presenterBox.appendChild(ui.classLink);
    ui.presenterBox.appendChild(ui.classCount);
    ui.presenterBox.appendChild(ui.followerList);
    ui.presenterBox.appendChild(ui.takeBack);
    ui.classLeave = el('button', {id: 'tcb-class-end', type: 'button'}, 'End class');
    ui.classBox.appendChild(el('h2', {'class': 'tcb-h'}, 'Class'));
    ui.classBox.appendChild(ui.classStatus);
    ui.classBox.appendChild(ui.presenterBox);
    ui.classBox.appendChild(ui.classLeave);

    panel.appendChild(ui.classStart);
    panel.appendChild(ui.classBox);
    panel.appendChild(ui.classEnded);
    panel.appendChild(ui.classError);

    // The banner: on every page of a class, who leads.
    ui.banner = el('div', {id: 'tcb-following', role: 'status'});
    root.appendChild(ui.banner);

    ui.classStartButton.onclick = startClass;
    ui.classJoinForm.onsubmit = function () { joinClass(); return false; };
    ui.takeBack.onclick = function () { giveControl(null); };
    ui.classLeave.onclick = endClass;
    renderClass();
  }

  // A page of a class: ask the server where the class is, then lead or follow.
  function classResume() {
    classRequest('GET', '', null, function (err, res) {
      if (err) {
        klass = null;
        saveClass();
        renderClass();
        render();
        if (err.status === 404) {
          setText(ui.classEnded, 'The class has ended.');
          show(ui.classEnded, true);
        }
        return;
      }
      takeView(res);
      renderClass();
      if (klass.role === 'presenter') { open(true); }
      classFollow();
    });
  }

  window.tandemCobrowse = {
    state: function () { return state; },
    status: '',
    blinks: [],
    connection: null
  };
  if (document.addEventListener) {
    document.addEventListener('click', onClick, false);
    document.addEventListener('click', onClassClick, false);
  } else {
    document.attachEvent('onclick', onClick);
    document.attachEvent('onclick', onClassClick);
  }
  build();
  state = load();
  if (state) { render(); open(state.open !== false); resume(); }
  klass = loadClass();
  var key = linkKey();
  if (klass) {
    renderClass();
    classResume();
  } else if (key && !state) {
    // A class's link: the join form, filled in, one press away.
    ui.classCodeInput.value = key;
    open(true);
    try { ui.classJoinButton.focus(); } catch (e) { /* hidden */ }
  }
}());
