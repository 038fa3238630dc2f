// hubwidgets LayerExplorer view. Python owns the state; this file renders `_rows` and sends
// actions as custom messages. Every name from a model is set with textContent, never as HTML.

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}

function fmt(n) {
  return Number(n).toLocaleString("en-US");
}

function button(label, title, onClick) {
  const b = el("button", "hw-btn", label);
  b.type = "button";
  b.title = title;
  b.addEventListener("click", onClick);
  return b;
}

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
  );
  const message = el("div", "hw-message");
  const code = el("pre", "hw-code");
  const table = el("div", "hw-rows");
  table.setAttribute("role", "tree");
  container.append(header, toolbar, message, table, code);
  root.append(container);

  function renderTotals() {
    const t = model.get("totals") || {};
    header.textContent =
      `${fmt(t.params || 0)} params · ${fmt(t.trainable || 0)} trainable · ` +
      `${fmt(t.frozen || 0)} frozen · ${t.bytes || ""}`;
  }

  function variableTable(row) {
    const box = el("div", "hw-vars");
    box.style.marginLeft = `${row.depth * 16 + 28}px`;
    for (const v of row.variables || []) {
      const line = el("div", "hw-var" + (model.get("selected") === v.path ? " hw-selected" : ""));
      line.dataset.path = v.path;
      line.append(
        el("span", "hw-var-name", v.name),
        el("span", "hw-var-shape", v.shape),
        el("span", "hw-var-dtype", v.dtype),
        el("span", "hw-var-train", v.trainable ? "trainable" : "frozen"),
        el("span", "hw-var-device", v.device.replace("/job:localhost/replica:0/task:0/", "")),
        el("span", "hw-var-size", v.size),
      );
      if (v.nonfinite) line.append(el("span", "hw-badge hw-badge-bad", "NaN/Inf"));
      line.addEventListener("click", () => send({ action: "select", path: v.path }));
      box.append(line);
    }
    return box;
  }

  function renderRows() {
    const rows = model.get("_rows") || [];
    const selected = model.get("selected");
    table.replaceChildren();
    for (const row of rows) {
      if (row.more_of !== undefined) {
        const more = button(`Show more (${fmt(row.remaining)} not listed)`,
          "List the next layers", () => send({ action: "more", path: row.more_of }));
        more.classList.add("hw-more");
        more.style.marginLeft = `${row.depth * 16 + 20}px`;
        table.append(more);
        continue;
      }
      const line = el("div", "hw-row" + (row.path === selected ? " hw-selected" : ""));
      line.setAttribute("role", "treeitem");
      line.dataset.path = row.path;
      line.style.paddingLeft = `${row.depth * 16}px`;
      const caret = el("button", "hw-caret", row.has_children || (row.variables || []).length || row.params
        ? (row.expanded ? "▾" : "▸") : "·");
      caret.type = "button";
      caret.title = row.expanded ? "Collapse" : "Expand";
      caret.addEventListener("click", (e) => {
        e.stopPropagation();
        send({ action: row.expanded ? "collapse" : "expand", path: row.path });
      });
      const toggle = el("input", "hw-toggle");
      toggle.type = "checkbox";
      toggle.checked = row.trainable === "trainable";
      toggle.indeterminate = row.trainable === "mixed";
      toggle.title = "Trainable (untick to freeze)";
      toggle.addEventListener("click", (e) => e.stopPropagation());
      toggle.addEventListener("change", () =>
        send({ action: "set_trainable", path: row.path, value: toggle.checked }));
      const badges = el("span", "hw-badges");
      for (const b of row.badges) {
        badges.append(el("span", `hw-badge hw-badge-${b.replace(/[^a-z]/gi, "").toLowerCase()}`, b));
      }
      line.append(
        caret,
        el("span", "hw-name", row.name),
        el("span", "hw-class", row.class_name),
        el("span", "hw-shape", row.output_shape),
        el("span", "hw-params", `${fmt(row.params)} (${fmt(row.trainable_params)} trainable / ${fmt(row.frozen_params)} frozen)`),
        toggle,
        badges,
      );
      line.title = (row.notes || []).join("\n");
      line.addEventListener("click", () => send({ action: "select", path: row.path }));
      table.append(line);
      if (row.expanded && (row.variables || []).length) table.append(variableTable(row));
    }
  }

  function renderMessage() {
    message.textContent = model.get("message");
    message.style.display = model.get("message") ? "" : "none";
    code.textContent = model.get("code");
    code.style.display = model.get("code") ? "" : "none";
  }

  renderTotals();
  renderRows();
  renderMessage();
  model.on("change:totals", renderTotals);
  model.on("change:_rows", renderRows);
  model.on("change:selected", renderRows);
  model.on("change:message", renderMessage);
  model.on("change:code", renderMessage);
  return () => clearTimeout(timer);
}

export default { render };
