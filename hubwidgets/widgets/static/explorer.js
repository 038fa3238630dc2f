// hubwidgets LayerExplorer view: a tree-table. Python owns the state; this file renders
// `_rows` and sends actions as custom messages. Every name from a model is set with
// textContent, never as HTML.

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

const INDENT = 14; // px per depth level
const COLUMNS = ["Layer", "Class", "Output shape", "Params", "Train"];

function render({ model, el: root }) {
  const send = (msg) => model.send(msg);
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
    button("Freeze all", "Freeze every layer", () => send({ action: "freeze_all" })),
    button("Unfreeze all", "Make every layer trainable", () => send({ action: "unfreeze_all" })),
    button("Freeze up to selected", "Freeze every layer up to and including the selected one",
      () => send({ action: "freeze_up_to", path: model.get("selected") })),
    button("Freeze matches", "Freeze the layers matching the search box",
      () => send({ action: "freeze_pattern", pattern: search.value })),
    button("LoRA on matches…", "Add LoRA adapters to the layers matching the search box (cannot be undone)",
      () => {
        const answer = window.prompt("Add LoRA adapters of rank (to the Dense, EinsumDense and Embedding layers matching the search box). Keras cannot remove adapters: this cannot be undone.", "4");
        if (answer === null) return;
        send({ action: "enable_lora_pattern", pattern: search.value, rank: Number(answer.trim()) });
      }),
  );
  const undoButton = button("Undo", "Undo the last weight edit (bit for bit)",
    () => send({ action: "undo" }));
  const redoButton = button("Redo", "Redo the last undone weight edit",
    () => send({ action: "redo" }));
  undoButton.classList.add("hw-undo");
  redoButton.classList.add("hw-redo");
  toolbar.append(undoButton, redoButton);
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
  container.append(header, toolbar, message, table, code);
  root.append(container);

  // The row menu: the weight edits (values only; trainable flags never change), then restore
  // and LoRA, as Python's edit table sends them (row_menu). A number is asked for where the
  // entry needs one; Python checks it before anything runs.
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
      const msg = { action: entry.action, path };
      for (const field of entry.fields || []) {
        const answer = window.prompt(field.question, field.example);
        if (answer === null) return;
        msg[field.name] = Number(answer.trim());
      }
      send(msg);
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
      send({ action: row.expanded ? "collapse" : "expand", path: row.path });
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
      send({ action: "set_trainable", path: row.path, value: toggle.checked }));
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
    send({ action: "select", path });
  }

  function renderRows() {
    const rows = model.get("_rows") || [];
    const selected = model.get("selected");
    let biggest = 0;
    for (const row of rows) if (row.depth > 0 && row.params) biggest = Math.max(biggest, row.params);
    const lines = [];
    for (const row of rows) {
      if (row.more_of !== undefined) {
        const more = button(`Show more (${fmt(row.remaining)} not listed)`,
          "List the next layers", () => send({ action: "more", path: row.more_of }));
        more.classList.add("hw-more");
        more.style.marginLeft = `${row.depth * INDENT + 22}px`;
        lines.push(more);
        continue;
      }
      lines.push(nodeLine(row, selected, biggest));
      if (row.expanded) for (const v of row.variables || []) lines.push(variableLine(row, v, selected, biggest));
    }
    body.replaceChildren(...lines);
    const current = body.querySelector(".hw-selected");
    if (current && (table.contains(document.activeElement) || pendingScroll)) {
      const top = current.offsetTop - head.offsetHeight;
      if (top < table.scrollTop || current.offsetTop + current.offsetHeight > table.scrollTop + table.clientHeight) {
        table.scrollTop = Math.max(0, top - table.clientHeight / 3);
      }
    }
    pendingScroll = false;
  }
  let pendingScroll = false;

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
      if (current.dataset.expandable && !current.dataset.expanded) send({ action: "expand", path: selected });
      else if (e.key === "ArrowRight" && lines[index + 1]) { pendingScroll = true; select(lines[index + 1].dataset.path); }
    } else if (e.key === "ArrowLeft" && current) {
      if (isNode && current.dataset.expanded) send({ action: "collapse", path: selected });
      else {
        const parent = selected.slice(0, selected.lastIndexOf("/"));
        if (parent && lines.some((l) => l.dataset.path === parent)) { pendingScroll = true; select(parent); }
      }
    } else if (e.key === " " && isNode) {
      const toggle = current.querySelector(".hw-toggle");
      send({ action: "set_trainable", path: selected, value: !toggle.checked });
    } else {
      return;
    }
    e.preventDefault();
    e.stopPropagation(); // JupyterLab's notebook shortcuts must not see these keys
  }
  table.addEventListener("keydown", onKey);
  body.addEventListener("mousedown", () => table.focus({ preventScroll: true }));

  function renderMessage() {
    message.textContent = model.get("message");
    message.style.display = model.get("message") ? "" : "none";
    code.textContent = model.get("code");
    code.style.display = model.get("code") ? "" : "none";
  }

  // A selection made elsewhere (a click in the overview) may name a row not listed yet: open
  // its parents, then page on, until it is listed (each step re-renders and comes back here).
  let seeking = null;
  let seekSteps = 0;
  function seek() {
    const selected = model.get("selected");
    if (!seeking || seeking !== selected) return;
    const rows = model.get("_rows") || [];
    const listed = rows.some((r) => r.path === selected ||
      (r.variables || []).some((v) => v.path === selected));
    const parent = selected.slice(0, selected.lastIndexOf("/"));
    if (listed || !parent || seekSteps++ > 50) {
      seeking = null;
      return;
    }
    const parentRow = rows.find((r) => r.path === parent);
    if (!parentRow || !parentRow.expanded) send({ action: "expand", path: parent });
    else if (rows.some((r) => r.more_of === parent)) send({ action: "more", path: parent });
    else seeking = null;
  }

  function onSelected() {
    pendingScroll = true; // e.g. a click in the overview: bring the row into view
    seeking = model.get("selected");
    seekSteps = 0;
    renderRows();
    seek();
  }

  function onRows() {
    if (seeking) pendingScroll = true;
    renderRows();
    seek();
  }

  renderTotals();
  renderRows();
  renderMessage();
  model.on("change:totals", renderTotals);
  model.on("change:_rows", onRows);
  model.on("change:selected", onSelected);
  model.on("change:message", renderMessage);
  model.on("change:code", renderMessage);
  // the kernel holds the model only while some view shows it (a cleared output, a re-run
  // cell or a closed tab lets a large model go)
  send({ view: "shown" });
  return () => {
    clearTimeout(timer);
    table.removeEventListener("keydown", onKey);
    send({ view: "removed" });
  };
}

export default { render };
