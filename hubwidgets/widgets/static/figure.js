// hubwidgets StatefulFigure: a plotly figure drawn from the widget's `figure` state (a base)
// with its `patch` applied (what changed since: a selection's traces and layout keys, so a
// small change does not send the whole figure again).
// plotly.js comes from one PlotlyBundle widget that every figure refers to, so a page (and a
// notebook's saved widget state) holds its 4.8 MB once, and is evaluated once per page.
// Each draw reads the state as it is then, after plotly.js is ready: nothing sent before the
// view existed, or while plotly.js loaded, can be missed.
// The colours are the view's own: each draw reads the page's theme (JupyterLab's CSS
// variables; a light default elsewhere) and makes it the layout's template, again when the
// theme changes. Nothing about the theme goes to the kernel.
const KEY = "__hubwidgets_plotly__";

function loadPlotly(host, model) {
  if (!globalThis[KEY]) {
    globalThis[KEY] = (async () => {
      const bundle = await host.getModel(model.get("bundle"));
      const source = bundle.get("plotly_js");
      // plotly.min.js is a UMD module: give it a CommonJS `module` and import it as ESM
      const url = URL.createObjectURL(new Blob([
        "const module = { exports: {} }; const exports = module.exports;\n", source,
        "\nexport default module.exports;\n"], { type: "text/javascript" }));
      try {
        return (await import(/* webpackIgnore: true */ url)).default;
      } finally {
        URL.revokeObjectURL(url);
      }
    })();
    globalThis[KEY].catch(() => { delete globalThis[KEY]; });
  }
  return globalThis[KEY];
}

// -- the figure: base and patch (hubwidgets.widgets.figure.drawn_figure does the same) -------
function isObject(value) {
  return value !== null && typeof value === "object" && !Array.isArray(value);
}

export function drawnFigure(figure, patch) {
  const base = isObject(figure) ? figure : {};
  const change = isObject(patch) ? patch : {};
  let data = Array.isArray(base.data) ? base.data : [];
  if (Array.isArray(change.data)) {
    data = change.data.map((trace, i) => (trace == null ? data[i] : trace))
      .filter((trace) => isObject(trace));
  }
  const layout = { ...(isObject(base.layout) ? base.layout : {}) };
  for (const key of Array.isArray(change.removed) ? change.removed : []) delete layout[key];
  Object.assign(layout, isObject(change.layout) ? change.layout : {});
  // plotly writes into what it draws: a copy keeps the widget's state as it was sent
  return structuredClone({ data, layout });
}

// -- the page's theme --------------------------------------------------------------------------
function solid(color, under) {
  const m = color.match(/rgba?\(([^)]+)\)/);
  if (!m) return color;
  const [r, g, b, a = 1] = m[1].split(/[ ,/]+/).filter(Boolean).map(Number);
  if (a >= 1 || !under) return `rgb(${r}, ${g}, ${b})`;
  const mix = (c, u) => Math.round(c * a + u * (1 - a));
  return `rgb(${mix(r, under[0])}, ${mix(g, under[1])}, ${mix(b, under[2])})`;
}

function channels(color) {
  const m = color.match(/rgba?\(([^)]+)\)/);
  return m ? m[1].split(/[ ,/]+/).filter(Boolean).slice(0, 3).map(Number) : [255, 255, 255];
}

function resolve(probe, expression) {
  probe.style.color = "";
  probe.style.color = expression;
  return getComputedStyle(probe).color;
}

// The page's colours, resolved to solid rgb: dark or light, text, muted text, grid, background.
export function readTheme(probe) {
  let background = solid(resolve(probe, "var(--jp-layout-color0, var(--vscode-editor-background, #ffffff))"));
  if (background === "rgb(0, 0, 0)" && !getComputedStyle(document.body).getPropertyValue("--jp-layout-color0")) {
    background = solid(getComputedStyle(document.body).backgroundColor) || background;
  }
  const under = channels(background);
  const [r, g, b] = under;
  const lightAttr = document.body.dataset.jpThemeLight;
  const dark = lightAttr !== undefined ? lightAttr === "false" : 0.2126 * r + 0.7152 * g + 0.0722 * b < 128;
  const fallbackText = dark ? "#ffffff" : "#212121";
  const fallbackGrid = dark ? "#424242" : "#e0e0e0";
  // a view not yet in the page resolves nothing: the light or dark defaults then
  return {
    dark,
    background: background || (dark ? "#111111" : "#ffffff"),
    font: solid(resolve(probe, `var(--jp-content-font-color1, ${fallbackText})`), under) || fallbackText,
    grid: solid(resolve(probe, `var(--jp-border-color2, ${fallbackGrid})`), under) || fallbackGrid,
  };
}

// A small plotly template from the page's colours: transparent paper, the page's text colour
// for every label, its border colour for grid and axes.
export function themeTemplate(theme) {
  const axis = { gridcolor: theme.grid, linecolor: theme.grid, zerolinecolor: theme.grid,
                 tickcolor: theme.grid, color: theme.font };
  return { layout: {
    font: { color: theme.font, family: "var(--jp-ui-font-family, sans-serif)" },
    paper_bgcolor: "rgba(0,0,0,0)", plot_bgcolor: "rgba(0,0,0,0)",
    xaxis: axis, yaxis: axis, xaxis2: axis, yaxis2: axis,
    hoverlabel: { bgcolor: theme.background, font: { color: theme.font }, bordercolor: theme.grid },
    legend: { font: { color: theme.font } },
    colorway: theme.dark
      ? ["#6ab0f3", "#ffb74d", "#81c784", "#e57373", "#ba68c8", "#4dd0e1"]
      : ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#17becf"],
  } };
}

async function render({ model, el, host }) {
  const div = document.createElement("div");
  div.className = "hw-figure";
  const probe = document.createElement("span");  // resolves the page's CSS colours
  probe.style.display = "none";
  el.append(div, probe);
  const Plotly = await loadPlotly(host, model);
  let theme = "";  // the theme of the last draw
  let drawing = Promise.resolve();
  let queued = false;
  const draw = () => {
    if (queued) return drawing;  // one draw reads whatever the state is by then
    queued = true;
    drawing = drawing.then(() => {
      queued = false;
      const { data, layout } = drawnFigure(model.get("figure"), model.get("patch"));
      const now = readTheme(probe);
      theme = JSON.stringify(now);
      layout.template = themeTemplate(now);
      return Plotly.react(div, data, layout, { displaylogo: false, responsive: false });
    });
    return drawing;
  };
  await draw();
  model.on("change:figure", draw);
  model.on("change:patch", draw);
  const observer = new MutationObserver(() => {
    if (JSON.stringify(readTheme(probe)) !== theme) draw();
  });
  observer.observe(document.body, { attributes: true, attributeFilter: [
    "data-jp-theme-name", "data-jp-theme-light", "class", "style"] });
  div.on("plotly_click", (event) => {
    const points = (event.points || []).map((p) => ({
      curve: p.curveNumber, index: Array.isArray(p.pointIndex) ? p.pointIndex : p.pointNumber,
      x: p.x, y: p.y }));
    model.send({ event: "click", points });
  });
  return () => {
    observer.disconnect();
    model.off("change:figure", draw);
    model.off("change:patch", draw);
    Plotly.purge(div);
  };
}

export default { render };
