// Bin Count review console: keyboard first, no page reload per save, the next photos preloaded.
// Panels are rendered by the server (/panel); this script only moves between them and saves.
(() => {
  "use strict";
  const queue = JSON.parse(document.getElementById("queue-data").textContent);
  // The keys the help lists (cli/review/keys.py): KeyboardEvent.key -> action, nothing else answers.
  const KEYS = JSON.parse(document.getElementById("keys-data").textContent);
  const ACTION_OF = new Map(KEYS.flatMap((k) => k.keys.map((key) => [key, k.action])));
  const stage = document.getElementById("stage");
  const message = document.getElementById("message");
  const panels = new Map(); // queue index -> Promise<{ok, html}>
  const done = new Map(); // queue index -> "saved" | "skipped"
  const PRELOAD = 2;
  let index = 0;
  let pending = null;
  let saving = false;
  let saved = 0;
  let startedAt = null;
  let messageTimer = null;

  const panel = () => stage.querySelector(".panel");

  function say(text, kind) {
    message.textContent = text;
    message.className = `show ${kind}`;
    clearTimeout(messageTimer);
    messageTimer = setTimeout(() => { message.className = kind === "error" ? "error" : ""; },
      kind === "error" ? 6000 : 1800);
  }

  function panelUrl(i) {
    const item = queue[i];
    return `/panel?${new URLSearchParams({ bin_id: item.bin_id, sk: item.sk })}`;
  }

  function preloadPhoto(html) {
    const template = document.createElement("template");
    template.innerHTML = html;
    const img = template.content.querySelector("img");
    if (img) new Image().src = img.getAttribute("src");
  }

  function load(i) {
    if (!panels.has(i)) {
      const request = fetch(panelUrl(i))
        .then(async (response) => ({ ok: response.ok, html: await response.text() }))
        .then((result) => { preloadPhoto(result.html); return result; })
        .catch(() => ({ ok: false, html: '<div class="panel gone"><div class="empty">The console cannot be reached.</div></div>' }));
      panels.set(i, request);
    }
    return panels.get(i);
  }

  function updateStats() {
    const left = queue.length - [...done.values()].filter((v) => v === "saved").length; // a skip stays
    document.getElementById("left").textContent = left;
    document.getElementById("saved").textContent = saved;
    const position = document.getElementById("position");
    if (position) position.textContent = queue.length ? `${index + 1} / ${queue.length}` : "";
    if (startedAt && saved > 0) {
      const minutes = Math.max((Date.now() - startedAt) / 60000, 1 / 60);
      const pace = saved / minutes;
      document.getElementById("pace").textContent = pace.toFixed(1);
      document.getElementById("eta").textContent = left ? `≈ ${Math.ceil(left / pace)} min to go` : "all done";
    }
  }

  function setPending(value) {
    pending = value;
    const current = panel();
    if (!current) return;
    const output = current.querySelector("output.pending");
    if (output) output.textContent = value === null ? "–" : (value === "+" ? `>${current.dataset.top}` : value);
    current.querySelectorAll(".choice").forEach((b) => b.classList.toggle("picked", b.dataset.count === value));
    current.querySelectorAll(".chart .col").forEach((c) => c.classList.toggle("picked", c.dataset.count === value));
  }

  // The help's digit row follows the photo's classes (0..top): what the digit keys accept now.
  function showDigitRange(current) {
    const top = current && current.dataset.top !== undefined ? Number(current.dataset.top) : null;
    if (top === null || Number.isNaN(top)) return;
    document.querySelectorAll('#keys [data-action="digits"]').forEach((el) => {
      if (el.tagName === "DT") el.textContent = top > 0 ? `0 – ${top}` : "0";
    });
    document.querySelectorAll('#keys dd[data-action="more"]').forEach((el) => {
      el.textContent = `type “more than ${top}”`;
    });
  }

  function typeDigit(key) {
    const current = panel();
    if (!current || current.dataset.gone) return;
    const top = Number(current.dataset.top);
    if (Number(key) > top) {
      say(`${key} is outside 0..${top}: type 0–${top}, or + for more than ${top}.`, "error");
      return;
    }
    setPending(key);
  }

  async function show(i, note = "") {
    if (!queue.length) return;
    if (i < 0) i = 0;
    if (i >= queue.length) {
      const skipped = [...done.values()].filter((v) => v === "skipped").length;
      say(`${note}End of the queue: ${saved} saved, ${skipped} skipped. ← goes back.`, "ok");
      return;
    }
    index = i;
    const result = await load(i);
    if (index !== i) return; // the reviewer moved on meanwhile
    stage.innerHTML = result.html;
    setPending(null);
    showDigitRange(panel());
    updateStats();
    for (let k = 1; k <= PRELOAD && i + k < queue.length; k++) load(i + k);
  }

  function modelAcceptable(current) {
    const model = current.dataset.modelCount;
    if (model === "") return { ok: false, why: "the model gave no count for this photo: type the count" };
    if (current.dataset.modelLb === "1") {
      return { ok: false, why: `the model says ${model} or more: type ${model} or + to say which` };
    }
    return { ok: true, model };
  }

  function howToAnswer(current) {
    const top = current.dataset.top;
    const model = modelAcceptable(current);
    const accept = model.ok ? `, or press a to accept the model's ${model.model}` : ` (${model.why})`;
    return `Nothing typed: type a count (0–${top}, + for more than ${top}) then Enter${accept}.`;
  }

  // Enter saves what was typed; nothing typed saves nothing (an acceptance is its own key).
  function save() {
    const current = panel();
    if (!current || current.dataset.gone || saving) return;
    if (pending === null) { say(howToAnswer(current), "error"); return; }
    send(current, pending, "typed");
  }

  function accept() {
    const current = panel();
    if (!current || current.dataset.gone || saving) return;
    const model = modelAcceptable(current);
    if (!model.ok) { say(`Nothing to accept: ${model.why}.`, "error"); return; }
    send(current, model.model, "accepted");
  }

  async function send(current, count, source) {
    saving = true;
    const at = index;
    try {
      const response = await fetch("/api/corrections", {
        method: "POST",
        headers: { "Content-Type": "application/json", "X-Bincount-Review": "1" },
        // which upload was reviewed (its record's sort key) and the record version the page showed
        body: JSON.stringify({ bin_id: current.dataset.bin, sk: current.dataset.sk, count: String(count),
                               seen: current.dataset.version, source }),
      });
      const answer = await response.json().catch(() => ({ error: `the console answered ${response.status}` }));
      if (!response.ok) {
        say(answer.error || `refused (${response.status})`, "error");
        if (response.status === 409 || response.status === 404) { // show what the record holds now
          panels.delete(at);
          if (index === at) show(at);
        }
        return;
      }
      if (!done.has(at) || done.get(at) !== "saved") saved += 1;
      done.set(at, "saved");
      panels.delete(at); // coming back shows the label (and its new version)
      current.classList.add("saved");
      const note = `${current.dataset.bin}: ${answer.message}`;
      say(note, "ok");
      show(at + 1, `${note} · `);
    } catch (error) {
      say(`not saved: ${error}`, "error");
    } finally {
      saving = false;
    }
  }

  function skip() {
    if (!queue.length) return;
    if (!done.has(index)) done.set(index, "skipped");
    show(index + 1);
  }

  const started = () => { if (startedAt === null) startedAt = Date.now(); }; // pace counts from the first action

  const ACTIONS = {
    digits: typeDigit,
    more: () => setPending("+"),
    save,
    accept,
    skip,
    previous: () => show(index - 1),
    next: () => show(index + 1),
    clear: () => setPending(null),
    reload: () => window.location.reload(), // the queue as it is now
  };

  document.addEventListener("keydown", (event) => {
    if (event.target.closest("input, textarea, select") || event.ctrlKey || event.metaKey || event.altKey) return;
    if (/^[0-9]$/.test(event.key)) { // any digit: one above this photo's top class is refused with a reason
      started();
      event.preventDefault();
      typeDigit(event.key);
      return;
    }
    const action = ACTION_OF.get(event.key);
    if (!action) return;
    started();
    event.preventDefault();
    ACTIONS[action](event.key);
  });

  document.addEventListener("click", (event) => {
    started();
    const choice = event.target.closest("[data-count]");
    const action = event.target.closest("[data-action]");
    const move = event.target.closest("[data-move]");
    if (choice && !choice.closest("#keys")) setPending(choice.dataset.count);
    else if (action && !action.closest("#keys") && action.dataset.action in ACTIONS) ACTIONS[action.dataset.action]();
    else if (move) show(index + Number(move.dataset.move));
  });

  showDigitRange(panel());
  if (queue.length && panel()) {
    panels.set(0, Promise.resolve({ ok: true, html: stage.innerHTML }));
    for (let k = 1; k <= PRELOAD && k < queue.length; k++) load(k);
  }
  updateStats();
})();
