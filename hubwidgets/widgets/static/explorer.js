// hubwidgets LayerExplorer view: a tree-table. What this view shows is its own state (open
// nodes, paging, scroll, an open inline form): two views of one explorer open their trees
// apart. The rows come from Python: the root's subtree in the synced `_top_rows` (the first
// paint needs no round trip), the rest asked for, once per subtree, with anywidget's
// experimental.invoke. Every action is a request whose response (ok, message, code) is shown
// by the click that sent it. Every name from a model is set with textContent, never as HTML.

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}

function fmt(n) {
  return Number(n || 0).toLocaleString("en-US");
}

function button(label, title, onClick) {
  const b = el("button", "hw-btn", label);
  b.type = "button";
  b.title = title;
  b.addEventListener("click", onClick);
  return b;
}

// A number typed in an inline form: sent as a number when it reads as one, else as the text
// itself (Python refuses it and says what it got).
function typed(text) {
  const trimmed = text.trim();
  const value = Number(trimmed);
  return trimmed !== "" && Number.isFinite(value) ? value : trimmed;
}

const INDENT = 14; // px per depth level
const PAGE = 100; // children asked for per "show more"
const READ_MS = 60_000; // how long a view waits for rows
const ACT_MS = 600_000; // and for an action (an edit of a large model takes a while)
const COLUMNS = ["Layer", "Class", "Output shape", "Params", "Train"];
const LORA_ON_MATCHES = {
  action: "enable_lora_pattern", label: "LoRA on matches",
  fields: [{ name: "rank", example: "4",
    question: "Add LoRA adapters of rank (to the Dense, EinsumDense and Embedding layers " +
      "matching the search box). Keras cannot remove adapters: this cannot be undone." }],
};

function render({ model, el: root, experimental }) {
  const invoke = experimental && experimental.invoke;
  // One request to Python; never rejects: a failure is a response that says why.
  async function ask(name, msg, ms = READ_MS) {
    if (!invoke) return { ok: false, message: "This copy is not connected to a kernel." };
    try {
      const [response] = await invoke(name, msg, { signal: AbortSignal.timeout(ms) });
      return response || { ok: false, message: "No answer from the kernel." };
    } catch (error) {
      return { ok: false, message: `No answer from the kernel (${error && error.name || error}).` };
    }
  }

  // -- this view's own state -----------------------------------------------------------------
  const top = () => model.get("_top_rows") || {};
  const rootPath = () => (top().row || {}).path;
  const open = new Set(); // paths of the open nodes
  if (rootPath()) open.add(rootPath());
  const listed = new Map(); // node path -> how many children this view lists
  const subtrees = new Map(); // node path -> {variables, children, total} asked for
  const asking = new Set(); // node paths whose subtree is on its way
  let searchRows = null; // what the search box shows (flat rows from Python), or null
  let form = null; // the open inline form: {path ("" for the toolbar), entry, values, error}
  let note = null; // {path, text}: the error an action of that row answered
  let toolbarNote = ""; // the error a toolbar button's action answered
  let pendingScroll = false;

  const listedOf = (path) => listed.get(path) || PAGE;
  const subtreeOf = (path) => subtrees.get(path) || (path === rootPath() ? top() : null);

  // Make sure this view holds the first listedOf(path) children of the node at path.
  async function ensure(path) {
    const current = subtreeOf(path);
    const want = listedOf(path);
    if (current && current.children && current.children.length >= Math.min(want, current.total)) return;
    if (asking.has(path)) return;
    asking.add(path);
    const start = current && current.children ? current.children.length : 0;
    const answer = await ask("_subtree_request", { path, start, count: want - start });
    asking.delete(path);
    if (!answer.ok) { // gone (the model changed): closed
      open.delete(path);
      subtrees.delete(path);
    } else {
      subtrees.set(path, start ? { ...answer, children: current.children.concat(answer.children) } : answer);
    }
  }

  // The model changed: ask again for the subtrees this view has open (the root's came
  // synced); a closed one is forgotten, and asked for when it is opened again.
  async function refresh() {
    for (const path of [...subtrees.keys()]) if (!open.has(path)) subtrees.delete(path);
    const held = [...subtrees.keys()];
    await Promise.all(held.map(async (path) => {
      const answer = await ask("_subtree_request", { path, start: 0, count: listedOf(path) });
      if (answer.ok) subtrees.set(path, answer);
      else { subtrees.delete(path); open.delete(path); }
    }));
    if (searchRows) await runSearch();
    draw();
  }

  async function runSearch() {
    const query = model.get("query");
    if (!query.trim()) {
      searchRows = null;
      toolbarNote = "";
      return;
    }
    const answer = await ask("_search_request", { query, shown: Object.fromEntries(listed) });
    if (model.get("query") !== query) return; // typed on meanwhile
    searchRows = answer.ok ? answer.rows : [];
    toolbarNote = answer.ok ? "" : answer.message; // said under the search box
  }

  function setOpen(path, isOpen) {
    if (isOpen) open.add(path);
    else open.delete(path);
    draw();
  }

  function showMore(path) {
    const current = subtreeOf(path);
    listed.set(path, Math.max(listedOf(path), current && current.children ? current.children.length : 0) + PAGE);
    if (searchRows) runSearch().then(draw);
    else ensure(path).then(draw);
  }

  // A selection made elsewhere (a click in the overview) may name a row this view does not
  // list: open the nodes above it, paging as far as needed, then scroll it into view.
  async function reveal(path) {
    if (!path || searchRows || listedNow(path)) return;
    const answer = await ask("_reveal_request", { path });
    if (!answer.ok || model.get("selected") !== path) return;
    for (const step of answer.steps) {
      open.add(step.path);
      if (listedOf(step.path) < step.listed) listed.set(step.path, step.listed);
    }
    await Promise.all(answer.steps.map((step) => ensure(step.path)));
    pendingScroll = true;
    draw();
  }

  const listedNow = (path) => [...body.querySelectorAll(".hw-row")].some((l) => l.dataset.path === path);

  // An action: a request whose response comes back to the click that sent it.
  function act(msg, place) {
    return ask("_action_request", msg, ACT_MS).then((answer) => {
      const error = answer.ok ? "" : answer.message;
      if (place === "toolbar") toolbarNote = error;
      else if (place !== undefined) note = error ? { path: place, text: error } : null;
      draw();
      return answer;
    });
  }

  // -- the page ------------------------------------------------------------------------------
  const container = el("div", "hw-explorer");
  const header = el("div", "hw-totals");
  const toolbar = el("div", "hw-toolbar");
  const search = el("input", "hw-search");
  search.type = "search";
  search.placeholder = "Search layers (name, class or regex)";
  search.value = model.get("query");
  let timer = null;
  search.addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(() => {
      model.set("query", search.value);
      model.save_changes();
    }, 150);
  });
  toolbar.append(
    search,
    button("Freeze all", "Freeze every layer", () => act({ action: "freeze_all" }, "toolbar")),
    button("Unfreeze all", "Make every layer trainable", () => act({ action: "unfreeze_all" }, "toolbar")),
    button("Freeze up to selected", "Freeze every layer up to and including the selected one",
      () => act({ action: "freeze_up_to", path: model.get("selected") }, "toolbar")),
    button("Freeze matches", "Freeze the layers matching the search box",
      () => act({ action: "freeze_pattern", pattern: search.value }, "toolbar")),
    button("LoRA on matches…", "Add LoRA adapters to the layers matching the search box (cannot be undone)",
      () => openForm("", LORA_ON_MATCHES)),
  );
  const undoButton = button("Undo", "Undo the last weight edit (bit for bit)",
    () => act({ action: "undo" }, "toolbar"));
  const redoButton = button("Redo", "Redo the last undone weight edit",
    () => act({ action: "redo" }, "toolbar"));
  undoButton.classList.add("hw-undo");
  redoButton.classList.add("hw-redo");
  toolbar.append(undoButton, redoButton);
  const toolbarArea = el("div", "hw-toolbar-area"); // the toolbar's form and its error
  toolbarArea.setAttribute("data-lm-suppress-shortcuts", "true");
  toolbarArea.setAttribute("data-p-suppress-shortcuts", "true");
  const message = el("div", "hw-message");
  const code = el("pre", "hw-code");
  const table = el("div", "hw-table");
  table.tabIndex = 0;
  table.setAttribute("role", "treegrid");
  table.setAttribute("data-lm-suppress-shortcuts", "true"); // our keys, not the notebook's
  table.setAttribute("data-p-suppress-shortcuts", "true");
  table.setAttribute("aria-label", "Layers (arrows move, Enter/Right expand, Left collapse, Space toggles trainable)");
  const head = el("div", "hw-head");
  head.setAttribute("role", "row");
  for (const title of COLUMNS) head.append(el("span", "", title));
  const body = el("div", "hw-rows");
  table.append(head, body);
  container.append(header, toolbar, toolbarArea, message, table, code);
  root.append(container);

  // -- the inline form (numbers an action needs), in a row or in the toolbar -----------------
  function openForm(path, entry) {
    form = { path, entry, values: {}, error: "", focus: true };
    note = null;
    draw();
  }

  function submitForm() {
    if (form.sending) return; // Enter pressed twice sends once
    form.sending = true;
    const { path, entry } = form;
    const msg = path ? { action: entry.action, path } : { action: entry.action, pattern: search.value };
    for (const field of entry.fields || []) {
      msg[field.name] = typed(form.values[field.name] ?? field.example);
    }
    const sent = form;
    act(msg).then((answer) => {
      sent.sending = false;
      if (form !== sent) return;
      if (answer.ok) form = null;
      else { form.error = answer.message; form.focus = true; }
      draw();
    });
  }

  function formBox(indent) {
    const box = el("div", "hw-form");
    box.setAttribute("role", "group");
    box.setAttribute("aria-label", form.entry.label);
    if (indent !== undefined) box.style.marginLeft = `${indent}px`;
    const inputs = [];
    for (const field of form.entry.fields || []) {
      const label = el("label", "hw-form-field");
      const input = el("input", "hw-form-input");
      input.type = "text";
      input.value = form.values[field.name] ?? field.example;
      input.setAttribute("aria-label", field.question);
      input.dataset.field = field.name;
      input.addEventListener("input", () => { form.values[field.name] = input.value; });
      label.append(el("span", "hw-form-question", field.question), input);
      box.append(label);
      inputs.push(input);
    }
    const ok = button("OK", `${form.entry.label}: send`, submitForm);
    ok.classList.add("hw-form-ok");
    const cancel = button("Cancel", "Close without changing anything", () => { form = null; draw(); });
    cancel.classList.add("hw-form-cancel");
    box.append(ok, cancel);
    if (form.error) {
      const error = el("div", "hw-form-error", form.error);
      error.setAttribute("role", "alert");
      box.append(error);
    }
    box.addEventListener("keydown", (e) => {
      if (e.key === "Enter" && e.target.tagName === "INPUT") submitForm();
      else if (e.key === "Escape") { form = null; draw(); table.focus({ preventScroll: true }); }
      else { e.stopPropagation(); return; } // typing, arrows, Space: the input's, not the tree's
      e.preventDefault();
      e.stopPropagation();
    });
    box.addEventListener("click", (e) => e.stopPropagation());
    return { box, inputs };
  }

  function focusForm(inputs) {
    if (!form || !form.focus || !inputs.length) return;
    const input = inputs[0];
    input.focus({ preventScroll: true });
    if (form.focus === "keep") input.setSelectionRange(input.value.length, input.value.length);
    else input.select(); // opened, or answered with an error: ready to be typed over
    form.focus = false;
  }

  function noteLine(text, indent) {
    const line = el("div", "hw-note", text);
    line.setAttribute("role", "alert");
    line.style.marginLeft = `${indent}px`;
    return line;
  }

  // The row menu: the weight edits (values only; trainable flags never change), then restore
  // and LoRA, as Python's edit table sends them (row_menu). An entry that needs numbers opens
  // the inline form in its row; Python checks them before anything runs.
  function editMenu(path, name) {
    const entries = model.get("row_menu") || [];
    const menu = el("select", "hw-menu");
    menu.tabIndex = -1;
    menu.title = `Edit the weights of ${name}`;
    menu.setAttribute("aria-label", `Edit the weights of ${name}`);
    const blank = el("option", "", "\u270e");
    blank.value = "";
    menu.append(blank);
    for (const entry of entries) {
      const option = el("option", "", entry.label);
      option.value = entry.action;
      menu.append(option);
    }
    menu.addEventListener("click", (e) => e.stopPropagation());
    menu.addEventListener("change", () => {
      const entry = entries.find((e) => e.action === menu.value);
      menu.value = "";
      if (!entry) return;
      if ((entry.fields || []).length) openForm(path, entry);
      else act({ action: entry.action, path }, path);
    });
    return menu;
  }

  function renderTotals() {
    const t = model.get("totals") || {};
    undoButton.disabled = !t.can_undo;
    redoButton.disabled = !t.can_redo;
    header.textContent =
      `${fmt(t.params)} params · ${fmt(t.trainable)} trainable · ` +
      `${fmt(t.frozen)} non-trainable · ${t.bytes || ""}`;
  }

  function paramsCell(params, biggest) {
    const cell = el("span", "hw-cell-params");
    const bar = el("span", "hw-bar");
    const fill = el("i");
    fill.style.width = `${biggest ? Math.max(0, Math.min(100, (100 * params) / biggest)) : 0}%`;
    bar.append(fill);
    cell.append(el("span", "hw-count", fmt(params)), bar);
    return cell;
  }

  function variableLine(row, v, selected, biggest) {
    const frozen = v.can_train !== false && !v.trainable;
    const line = el("div", "hw-row hw-var" + (frozen ? " hw-frozen" : "") +
      (selected === v.path ? " hw-selected" : ""));
    line.setAttribute("role", "row");
    line.dataset.path = v.path;
    line.dataset.kind = "variable";
    const name = el("span", "hw-cell-name");
    name.style.paddingLeft = `${(row.depth + 1) * INDENT + 16}px`;
    name.append(el("span", "hw-name", v.name));
    if (v.nonfinite) name.append(el("span", "hw-badge hw-badge-bad", "NaN/Inf"));
    const device = (v.device || "").replace("/job:localhost/replica:0/task:0/", "");
    const cls = el("span", "hw-class", `${v.dtype} · ${v.size}`);
    cls.title = device ? `on ${device}` : "";
    const train = el("span", "hw-cell-train");
    if (v.can_train === false) {
      const label = el("span", "hw-badge hw-badge-fixed", "not trained");
      label.title = `Never trained: ${v.not_trained_why || "gradients never change it"}`;
      train.append(label);
    } else {
      train.append(el("span", "hw-train-label", v.trainable ? "trainable" : "frozen ❄"));
    }
    train.append(editMenu(v.path, v.name));
    line.append(name, cls, el("span", "hw-shape", v.shape),
      v.params !== undefined ? paramsCell(v.params, biggest) : el("span", "hw-cell-params", ""), train);
    line.addEventListener("click", () => select(v.path));
    return line;
  }

  function nodeLine(row, selected, biggest) {
    const frozen = row.trainable === "frozen";
    const line = el("div", "hw-row hw-node" + (frozen ? " hw-frozen" : "") +
      (row.trainable === "mixed" ? " hw-mixed" : "") + (row.path === selected ? " hw-selected" : ""));
    line.setAttribute("role", "row");
    line.setAttribute("aria-level", String(row.depth + 1));
    line.dataset.path = row.path;
    line.dataset.kind = "node";
    const expandable = row.has_children || (row.variables || []).length > 0 || row.params > 0;
    line.dataset.expandable = expandable ? "1" : "";
    line.dataset.expanded = row.expanded ? "1" : "";
    if (expandable) line.setAttribute("aria-expanded", row.expanded ? "true" : "false");
    const name = el("span", "hw-cell-name");
    name.style.paddingLeft = `${row.depth * INDENT}px`;
    const caret = el("button", "hw-caret", expandable ? (row.expanded ? "▾" : "▸") : "");
    caret.type = "button";
    caret.tabIndex = -1;
    caret.title = row.expanded ? "Collapse" : "Expand";
    caret.addEventListener("click", (e) => {
      e.stopPropagation();
      if (!searchRows) setOpen(row.path, !row.expanded);
    });
    name.append(caret, el("span", "hw-name", row.name));
    name.title = row.name;
    if (frozen) name.append(el("span", "hw-ice", "❄"));
    for (const b of row.badges || []) {
      if (b === "frozen" || b === "trainable") continue; // said by the toggle column
      const kind = b.startsWith("LoRA") ? "lora" : b === row.quantization ? "quant"
        : b.replace(/[^a-z]/gi, "").toLowerCase();
      const badge = el("span", `hw-badge hw-badge-${kind}`, b);
      if (kind === "lora" || kind === "quant") { // what trains and what cannot: the notes
        badge.title = (row.notes || []).filter((n) => n.startsWith(kind === "lora" ? "LoRA" : "quantized")).join("\n");
      }
      name.append(badge);
    }
    const toggleCell = el("span", "hw-cell-train");
    const toggle = el("input", "hw-toggle");
    toggle.type = "checkbox";
    toggle.tabIndex = -1;
    toggle.checked = row.trainable === "trainable";
    toggle.indeterminate = row.trainable === "mixed";
    toggle.title = `${row.trainable}: untick to freeze, tick to train`;
    toggle.setAttribute("aria-label", `${row.name} trainable`);
    toggle.addEventListener("click", (e) => e.stopPropagation());
    toggle.addEventListener("change", () =>
      act({ action: "set_trainable", path: row.path, value: toggle.checked }, row.path));
    toggleCell.append(toggle);
    if (row.params > 0) toggleCell.append(editMenu(row.path, row.name));
    const params = paramsCell(row.params, row.depth === 0 ? row.params : biggest);
    params.title = `${fmt(row.trainable_params)} trainable · ${fmt(row.frozen_params)} non-trainable`;
    const cls = el("span", "hw-class", row.class_name);
    cls.title = row.class_name;
    const shape = el("span", "hw-shape", row.output_shape);
    shape.title = row.output_shape;
    line.append(name, cls, shape, params, toggleCell);
    line.title = (row.notes || []).join("\n");
    line.addEventListener("click", () => select(row.path));
    return line;
  }

  function select(path) {
    act({ action: "select", path }, path);
  }

  // The rows this view shows, top to bottom: the search's, or the tree with this view's open
  // nodes (a node opened for the first time asks for its subtree, drawn when it comes).
  function visibleRows() {
    if (searchRows) return searchRows;
    const rows = [];
    const first = top().row;
    if (!first) return rows;
    (function visit(row, depth) {
      const isOpen = open.has(row.path);
      const subtree = isOpen ? subtreeOf(row.path) : null;
      rows.push({ ...row, depth, expanded: isOpen, variables: subtree ? subtree.variables : [] });
      if (!isOpen) return;
      if (!subtree || (subtree.children || []).length < Math.min(listedOf(row.path), subtree.total)) {
        if (!asking.has(row.path)) ensure(row.path).then(draw);
        if (!subtree) {
          rows.push({ loading: row.path, depth: depth + 1 });
          return;
        }
      }
      for (const child of subtree.children || []) visit(child, depth + 1);
      const remaining = subtree.total - (subtree.children || []).length;
      if (remaining > 0) rows.push({ more_of: row.path, remaining, depth: depth + 1 });
    })(first, 0);
    return rows;
  }

  function draw() {
    const rows = visibleRows();
    const selected = model.get("selected");
    let biggest = 0;
    for (const row of rows) if (row.depth > 0 && row.params) biggest = Math.max(biggest, row.params);
    const formHadFocus = form && document.activeElement && document.activeElement.closest &&
      document.activeElement.closest(".hw-form");
    if (formHadFocus && !form.focus) form.focus = "keep"; // redrawn while typing
    const lines = [];
    let inputs = [];
    for (const row of rows) {
      if (row.loading !== undefined) {
        lines.push(el("div", "hw-loading", "…"));
        lines[lines.length - 1].style.marginLeft = `${row.depth * INDENT + 22}px`;
        continue;
      }
      if (row.more_of !== undefined) {
        const more = button(`Show more (${fmt(row.remaining)} not listed)`,
          "List the next layers", () => showMore(row.more_of));
        more.classList.add("hw-more");
        more.style.marginLeft = `${row.depth * INDENT + 22}px`;
        lines.push(more);
        continue;
      }
      lines.push(nodeLine(row, selected, biggest));
      const indent = (row.depth + 1) * INDENT;
      if (form && form.path === row.path) {
        const made = formBox(indent);
        lines.push(made.box);
        inputs = made.inputs;
      }
      if (note && note.path === row.path) lines.push(noteLine(note.text, indent));
      if (row.expanded) {
        for (const v of row.variables || []) {
          lines.push(variableLine(row, v, selected, biggest));
          if (form && form.path === v.path) {
            const made = formBox(indent + INDENT);
            lines.push(made.box);
            inputs = made.inputs;
          }
          if (note && note.path === v.path) lines.push(noteLine(note.text, indent + INDENT));
        }
      }
    }
    body.replaceChildren(...lines);
    const parts = [];
    if (form && form.path === "") {
      const made = formBox();
      parts.push(made.box);
      inputs = made.inputs;
    }
    if (toolbarNote) parts.push(noteLine(toolbarNote, 0));
    toolbarArea.replaceChildren(...parts);
    focusForm(inputs);
    const current = body.querySelector(".hw-selected");
    if (current && (table.contains(document.activeElement) || pendingScroll)) {
      const top = current.offsetTop - head.offsetHeight;
      if (top < table.scrollTop || current.offsetTop + current.offsetHeight > table.scrollTop + table.clientHeight) {
        table.scrollTop = Math.max(0, top - table.clientHeight / 3);
      }
    }
    pendingScroll = false;
    renderMessage();
  }

  function onKey(e) {
    const lines = [...body.querySelectorAll(".hw-row")];
    if (!lines.length) return;
    const selected = model.get("selected");
    let index = lines.findIndex((l) => l.dataset.path === selected);
    const current = index >= 0 ? lines[index] : null;
    const isNode = current && current.dataset.kind === "node";
    if (e.key === "ArrowDown" || e.key === "ArrowUp") {
      index = index < 0 ? 0 : Math.max(0, Math.min(lines.length - 1, index + (e.key === "ArrowDown" ? 1 : -1)));
      pendingScroll = true;
      select(lines[index].dataset.path);
    } else if ((e.key === "Enter" || e.key === "ArrowRight") && isNode) {
      if (current.dataset.expandable && !current.dataset.expanded && !searchRows) setOpen(selected, true);
      else if (e.key === "ArrowRight" && lines[index + 1]) { pendingScroll = true; select(lines[index + 1].dataset.path); }
    } else if (e.key === "ArrowLeft" && current) {
      if (isNode && current.dataset.expanded && !searchRows) setOpen(selected, false);
      else {
        const parent = selected.slice(0, selected.lastIndexOf("/"));
        if (parent && lines.some((l) => l.dataset.path === parent)) { pendingScroll = true; select(parent); }
      }
    } else if (e.key === " " && isNode) {
      const toggle = current.querySelector(".hw-toggle");
      act({ action: "set_trainable", path: selected, value: !toggle.checked }, selected);
    } else {
      return;
    }
    e.preventDefault();
    e.stopPropagation(); // JupyterLab's notebook shortcuts must not see these keys
  }
  table.addEventListener("keydown", onKey);
  body.addEventListener("mousedown", (e) => {
    if (!(e.target.closest && e.target.closest(".hw-form"))) table.focus({ preventScroll: true });
  });

  // The shared message line; hidden while this view shows the same text where it was caused.
  function renderMessage() {
    const text = model.get("message");
    const shownHere = text && ((note && note.text === text) || toolbarNote === text ||
      (form && form.error === text));
    message.textContent = text;
    message.style.display = text && !shownHere ? "" : "none";
    code.textContent = model.get("code");
    code.style.display = model.get("code") ? "" : "none";
  }

  function onSelected() {
    pendingScroll = true; // e.g. a click in the overview: bring the row into view
    draw();
    reveal(model.get("selected"));
  }

  function onTopRows() {
    if (!open.size && rootPath()) open.add(rootPath());
  }

  renderTotals();
  draw();
  if (model.get("query").trim()) runSearch().then(draw);
  model.on("change:totals", renderTotals);
  model.on("change:_top_rows", onTopRows);
  model.on("change:rows_version", () => { draw(); refresh(); });
  model.on("change:query", () => {
    if (search.value !== model.get("query") && document.activeElement !== search) search.value = model.get("query");
    runSearch().then(draw);
  });
  model.on("change:selected", onSelected);
  model.on("change:message", renderMessage);
  model.on("change:code", renderMessage);
  // the kernel holds the model only while some view shows it (a cleared output, a re-run
  // cell or a closed tab lets a large model go)
  model.send({ view: "shown" });
  return () => {
    clearTimeout(timer);
    table.removeEventListener("keydown", onKey);
    model.send({ view: "removed" });
  };
}

export default { render };
