// Bin Count review console: keyboard first, no page reload per save, the next photos preloaded.
// Panels are rendered by the server (/panel); this script only moves between them and saves.
(() => {
  "use strict";
  const queue = JSON.parse(document.getElementById("queue-data").textContent);
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
    const left = queue.length - done.size;
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
    current.querySelectorAll(".chart .col").forEach((c, k) => c.classList.toggle("picked", String(k) === value));
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
    updateStats();
    for (let k = 1; k <= PRELOAD && i + k < queue.length; k++) load(i + k);
  }

  function countToSave(current) {
    if (pending !== null) return pending;
    const model = current.dataset.modelCount;
    if (model === "") { say("Type a count first (0–9 or +): the model gave none.", "error"); return null; }
    if (current.dataset.modelLb === "1") {
      say(`The model says ${model} or more: press ${model} or + to say which.`, "error");
      return null;
    }
    return model;
  }

  async function save() {
    const current = panel();
    if (!current || current.dataset.gone || saving) return;
    const count = countToSave(current);
    if (count === null) return;
    saving = true;
    const at = index;
    try {
      const response = await fetch("/api/corrections", {
        method: "POST",
        headers: { "Content-Type": "application/json", "X-Bincount-Review": "1" },
        // which upload was reviewed (its record's sort key) and the record version the page showed
        body: JSON.stringify({ bin_id: current.dataset.bin, sk: current.dataset.sk, count: String(count),
                               seen: current.dataset.version }),
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

  document.addEventListener("keydown", (event) => {
    if (event.target.closest("input, textarea, select") || event.ctrlKey || event.metaKey || event.altKey) return;
    const key = event.key;
    started();
    if (/^[0-9]$/.test(key)) setPending(key);
    else if (key === "+") setPending("+");
    else if (key === "Enter") save();
    else if (key === "s" || key === "S") skip();
    else if (key === "ArrowRight" || key === "ArrowDown") show(index + 1);
    else if (key === "ArrowLeft" || key === "ArrowUp") show(index - 1);
    else if (key === "Escape" || key === "Backspace") setPending(null);
    else if (key === "r" || key === "R") window.location.reload(); // the queue as it is now
    else return;
    event.preventDefault();
  });

  document.addEventListener("click", (event) => {
    started();
    const choice = event.target.closest("[data-count]");
    const action = event.target.closest("[data-action]");
    const move = event.target.closest("[data-move]");
    if (choice) setPending(choice.dataset.count);
    else if (action && action.dataset.action === "save") save();
    else if (action && action.dataset.action === "skip") skip();
    else if (move) show(index + Number(move.dataset.move));
  });

  if (queue.length && panel()) {
    panels.set(0, Promise.resolve({ ok: true, html: stage.innerHTML }));
    for (let k = 1; k <= PRELOAD && k < queue.length; k++) load(k);
  }
  updateStats();
})();
