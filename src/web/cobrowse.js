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
      '.tandem-marked{outline:3px solid #d63384 !important;outline-offset:2px}');
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
    show(ui.ask, !state && !ended);
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

  window.tandemCobrowse = {
    state: function () { return state; },
    status: '',
    blinks: [],
    connection: null
  };
  if (document.addEventListener) { document.addEventListener('click', onClick, false); } else { document.attachEvent('onclick', onClick); }
  build();
  state = load();
  if (state) { render(); open(state.open !== false); resume(); }
}());
