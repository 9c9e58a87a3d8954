// The web chat of `smm-bot try`: plays a Telegram client against /api (bot/standin/webchat.py).
// The bot's texts arrive as plain text plus Telegram entities and are built into the page with
// DOM nodes (text nodes and an allow-list of elements); nothing the bot or a user wrote is ever
// parsed as HTML.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const SAFE_URL = /^(https?:|tg:|mailto:)/i;
  // Commands in a bot's text are tappable, as in Telegram: "/order" after a space or a line start.
  const COMMAND_RE = /(^|[\s(])(\/[A-Za-z0-9_]{1,32})(?![A-Za-z0-9_@/])/g;
  const TOAST_MS = 3000;
  const PENDING_MS = 15000;

  const state = {
    personas: [],
    user: null,
    version: "",
    controller: null,
    messages: new Map(), // message id -> element
    fresh: true, // the first snapshot of this persona: old answers are not toasted again
    seenAnswers: new Set(),
    pending: new Map(), // query id -> button element waiting for its answer
    commandsKey: "",
    commands: [],
    seenLatest: {}, // persona id -> newest bot message id already seen
  };

  async function api(path, body, signal) {
    const options = { signal };
    if (body !== undefined) {
      options.method = "POST";
      options.headers = { "Content-Type": "application/json" };
      options.body = JSON.stringify(body);
    }
    const response = await fetch(path, options);
    const data = await response.json().catch(() => ({}));
    if (!response.ok) {
      throw new Error(data.error || `The bot did not answer (HTTP ${response.status}).`);
    }
    return data;
  }

  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  // ------------------------------------------------------------------ text and entities

  function elementFor(entity) {
    const make = (tag, className) => {
      const el = document.createElement(tag);
      if (className) el.className = className;
      return { outer: el, inner: el, plain: false };
    };
    switch (entity.type) {
      case "bold": return make("b");
      case "italic": return make("i");
      case "underline": return make("u");
      case "strikethrough": return make("s");
      case "code": return { ...make("code"), plain: true };
      case "pre": {
        const pre = document.createElement("pre");
        const code = document.createElement("code");
        if (entity.language) code.dataset.language = entity.language;
        pre.append(code);
        return { outer: pre, inner: code, plain: true };
      }
      case "blockquote":
      case "expandable_blockquote": return make("blockquote");
      case "spoiler": {
        const made = make("span", "spoiler");
        made.outer.title = "Tap to reveal";
        made.outer.addEventListener("click", () => made.outer.classList.add("shown"));
        return made;
      }
      case "text_link": {
        const a = document.createElement("a");
        if (SAFE_URL.test(entity.url || "")) {
          a.href = entity.url;
          a.target = "_blank";
          a.rel = "noopener noreferrer";
        }
        return { outer: a, inner: a, plain: true };
      }
      case "bot_command": return make("span", "command-entity");
      default: return make("span");
    }
  }

  function appendText(node, text, linkCommands) {
    if (!text) return;
    if (!linkCommands) {
      node.append(text);
      return;
    }
    let last = 0;
    for (const match of text.matchAll(COMMAND_RE)) {
      const start = match.index + match[1].length;
      node.append(text.slice(last, start));
      const command = document.createElement("span");
      command.className = "command";
      command.textContent = match[2];
      command.addEventListener("click", () => send(match[2]));
      node.append(command);
      last = start + match[2].length;
    }
    node.append(text.slice(last));
  }

  // Telegram entities nest properly (offsets in UTF-16 units, as JavaScript strings count).
  function renderText(text, entities, linkCommands) {
    const root = document.createDocumentFragment();
    const stack = [{ node: root, end: text.length, plain: !linkCommands }];
    let pos = 0;
    const top = () => stack[stack.length - 1];
    const emit = (upto) => {
      if (upto > pos) {
        appendText(top().node, text.slice(pos, upto), !top().plain);
        pos = upto;
      }
    };
    const sorted = [...(entities || [])].sort(
      (a, b) => a.offset - b.offset || b.length - a.length);
    for (const entity of sorted) {
      if (entity.offset < pos) continue; // overlapping, not nested: keep the text, drop the style
      while (stack.length > 1 && top().end <= entity.offset) {
        emit(top().end);
        stack.pop();
      }
      emit(entity.offset);
      const made = elementFor(entity);
      top().node.append(made.outer);
      stack.push({
        node: made.inner,
        end: Math.min(entity.offset + entity.length, top().end),
        plain: top().plain || made.plain,
      });
    }
    while (stack.length > 1) {
      emit(top().end);
      stack.pop();
    }
    emit(text.length);
    return root;
  }

  // ------------------------------------------------------------------ messages

  function timeOf(date) {
    return new Date(date * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  }

  function renderKeyboard(message) {
    const keyboard = document.createElement("div");
    keyboard.className = "keyboard";
    for (const row of message.keyboard) {
      const line = document.createElement("div");
      line.className = "row";
      for (const button of row) {
        let el;
        if (button.data) {
          el = document.createElement("button");
          el.type = "button";
          el.dataset.data = button.data;
          el.addEventListener("click", () => press(message.id, button.data, el));
        } else {
          el = document.createElement("a");
          if (SAFE_URL.test(button.url || "")) {
            el.href = button.url;
            el.target = "_blank";
            el.rel = "noopener noreferrer";
          }
        }
        el.textContent = button.text;
        el.title = button.text;
        line.append(el);
      }
      keyboard.append(line);
    }
    return keyboard;
  }

  function fill(el, message) {
    const body = document.createElement("div");
    body.className = "body";
    body.append(renderText(message.text, message.entities, message.from_bot));
    const meta = document.createElement("div");
    meta.className = "meta";
    meta.textContent = (message.edited ? "edited " : "") + timeOf(message.date);
    el.replaceChildren(body);
    if (message.keyboard.length) el.append(renderKeyboard(message));
    el.append(meta);
    el.dataset.seq = String(message.seq);
    el.classList.toggle("edited", message.edited);
  }

  function renderMessage(message) {
    const el = document.createElement("div");
    el.className = "msg " + (message.from_bot ? "bot" : "user");
    el.dataset.id = String(message.id);
    fill(el, message);
    return el;
  }

  function showEmpty(show) {
    let hint = $("chat").querySelector(".empty");
    if (show && !hint) {
      hint = document.createElement("div");
      hint.className = "empty";
      hint.textContent = "No messages yet. Send /start, or pick a command from ☰ Menu.";
      $("chat").append(hint);
    } else if (!show && hint) {
      hint.remove();
    }
  }

  function applySnapshot(snap) {
    const chat = $("chat");
    const nearBottom = chat.scrollHeight - chat.scrollTop - chat.clientHeight < 120;
    const seen = new Set();
    let previous = null;
    let added = false;
    let edited = false;
    for (const message of snap.messages) {
      seen.add(message.id);
      let el = state.messages.get(message.id);
      if (!el) {
        el = renderMessage(message);
        state.messages.set(message.id, el);
        if (previous) previous.after(el);
        else chat.prepend(el);
        added = true;
      } else if (el.dataset.seq !== String(message.seq)) {
        fill(el, message); // edited in place, like Telegram
        edited = true;
        el.classList.remove("flash");
        void el.offsetWidth; // restart the animation
        el.classList.add("flash");
      }
      previous = el;
    }
    for (const [id, el] of state.messages) {
      if (!seen.has(id)) { // deleted: it fades out
        state.messages.delete(id);
        el.classList.add("deleting");
        setTimeout(() => el.remove(), 350);
      }
    }
    showEmpty(snap.messages.length === 0);
    // Follow the conversation, unless the person scrolled up to read.
    if ((added || edited) && (nearBottom || state.fresh)) chat.scrollTop = chat.scrollHeight;
    applyAnswers(snap.answers);
    applyCommands(snap.commands);
    applyUnread(snap.latest);
    state.fresh = false;
  }

  // ------------------------------------------------------------------ taps and their answers

  function toast(text) {
    const el = $("toast");
    el.textContent = text;
    el.hidden = false;
    clearTimeout(toast.timer);
    toast.timer = setTimeout(() => { el.hidden = true; }, TOAST_MS);
  }

  function alertBox(text) {
    $("alert-text").textContent = text;
    $("alert").hidden = false;
    $("alert-ok").focus();
  }

  function applyAnswers(answers) {
    for (const answer of answers) {
      if (state.seenAnswers.has(answer.id)) continue;
      state.seenAnswers.add(answer.id);
      const button = state.pending.get(answer.id);
      if (button) {
        button.classList.remove("pending");
        state.pending.delete(answer.id);
      }
      if (state.fresh || !answer.text) continue;
      if (answer.show_alert) alertBox(answer.text);
      else toast(answer.text);
    }
  }

  async function press(messageId, data, button) {
    if (button.classList.contains("pending")) return;
    button.classList.add("pending");
    try {
      const result = await api("/api/press", { user: state.user, message_id: messageId, data });
      state.pending.set(result.query_id, button);
      setTimeout(() => button.classList.remove("pending"), PENDING_MS);
    } catch (err) {
      button.classList.remove("pending");
      toast(err.message);
    }
  }

  // ------------------------------------------------------------------ typing and the menu

  async function send(text) {
    try {
      await api("/api/send", { user: state.user, text });
      return true;
    } catch (err) {
      toast(err.message);
      return false;
    }
  }

  function applyCommands(commands) {
    const key = JSON.stringify(commands);
    if (key === state.commandsKey) return;
    state.commandsKey = key;
    state.commands = commands;
    renderMenu("");
  }

  function renderMenu(filter) {
    const menu = $("menu");
    menu.replaceChildren();
    const wanted = filter.replace(/^\//, "").toLowerCase();
    for (const command of state.commands) {
      if (wanted && !command.command.startsWith(wanted)) continue;
      const item = document.createElement("button");
      item.type = "button";
      item.setAttribute("role", "menuitem");
      item.dataset.command = command.command;
      const name = document.createElement("span");
      name.className = "name";
      name.textContent = "/" + command.command;
      const desc = document.createElement("span");
      desc.className = "desc";
      desc.textContent = command.description;
      item.append(name, desc);
      item.addEventListener("click", () => {
        closeMenu();
        $("text").value = "";
        resize();
        send("/" + command.command);
      });
      menu.append(item);
    }
    return menu.childElementCount;
  }

  function closeMenu() {
    $("menu").hidden = true;
  }

  function resize() {
    const text = $("text");
    text.style.height = "auto";
    text.style.height = `${text.scrollHeight + 2}px`;
  }

  function onTyping() {
    resize();
    const value = $("text").value;
    // As in Telegram: a "/" at the start opens the matching part of the menu.
    if (/^\/\w*$/.test(value) && renderMenu(value) > 0) $("menu").hidden = false;
    else closeMenu();
  }

  async function submit(event) {
    event.preventDefault();
    const box = $("text");
    const text = box.value;
    if (!text.trim()) return;
    box.value = "";
    resize();
    closeMenu();
    if (!(await send(text))) box.value = text;
    box.focus();
  }

  // ------------------------------------------------------------------ personas

  function applyUnread(latest) {
    for (const persona of state.personas) {
      const id = String(persona.user_id);
      const newest = latest[id] || 0;
      if (persona.user_id === state.user || state.seenLatest[id] === undefined) {
        state.seenLatest[id] = newest;
      }
      const tab = document.querySelector(`#personas button[data-user="${id}"]`);
      if (tab) tab.classList.toggle("unread", newest > state.seenLatest[id]);
    }
  }

  function choose(userId) {
    const persona = state.personas.find((p) => p.user_id === userId) || state.personas[0];
    state.user = persona.user_id;
    state.version = "";
    state.fresh = true;
    state.pending.clear();
    state.messages.clear();
    $("chat").replaceChildren();
    $("about").textContent = `You are ${persona.name}: ${persona.about}`;
    for (const tab of document.querySelectorAll("#personas button")) {
      tab.setAttribute("aria-pressed", String(tab.dataset.user === String(persona.user_id)));
    }
    history.replaceState(null, "", `#${persona.user_id}`);
    if (state.controller) state.controller.abort();
  }

  async function pollForever() {
    for (;;) {
      const user = state.user;
      const controller = new AbortController();
      state.controller = controller;
      try {
        const query = `user=${user}&since=${encodeURIComponent(state.version)}`;
        const snap = await api(`/api/chat?${query}`, undefined, controller.signal);
        if (user !== state.user) continue;
        state.version = snap.version;
        applySnapshot(snap);
        $("bot-status").textContent = "demo mode · a local stand-in for Telegram";
      } catch (err) {
        if (controller.signal.aborted) continue;
        $("bot-status").textContent = "cannot reach the bot; retrying…";
        await sleep(1000);
      }
    }
  }

  async function start() {
    const info = await api("/api/personas");
    state.personas = info.personas;
    $("bot-name").textContent = info.bot.first_name;
    document.title = `${info.bot.first_name} · try it`;
    const nav = $("personas");
    for (const persona of info.personas) {
      const tab = document.createElement("button");
      tab.type = "button";
      tab.dataset.user = String(persona.user_id);
      tab.title = persona.about;
      const role = document.createElement("span");
      role.className = "role";
      role.textContent = persona.role;
      tab.append(persona.name, role);
      tab.addEventListener("click", () => choose(persona.user_id));
      nav.append(tab);
    }
    choose(Number(location.hash.slice(1)) || info.personas[0].user_id);
    $("composer").addEventListener("submit", submit);
    $("text").addEventListener("input", onTyping);
    $("text").addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) submit(event);
      if (event.key === "Escape") closeMenu();
    });
    $("menu-button").addEventListener("click", () => {
      const menu = $("menu");
      if (menu.hidden) renderMenu("");
      menu.hidden = !menu.hidden;
    });
    $("alert-ok").addEventListener("click", () => { $("alert").hidden = true; });
    document.addEventListener("click", (event) => {
      if (!event.target.closest("#menu, #menu-button")) closeMenu();
    });
    pollForever();
  }

  start().catch((err) => {
    $("bot-status").textContent = `the page could not start: ${err.message}`;
  });
})();
