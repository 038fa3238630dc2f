// hubwidgets StatefulFigure: a plotly figure drawn from the widget's `figure` state.
// plotly.js comes from one PlotlyBundle widget that every figure refers to, so a page (and a
// notebook's saved widget state) holds its 4.8 MB once, and is evaluated once per page.
// Each draw reads the state as it is then, after plotly.js is ready: nothing sent before the
// view existed, or while plotly.js loaded, can be missed.
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

async function render({ model, el, host }) {
  const div = document.createElement("div");
  div.className = "hw-figure";
  el.append(div);
  const Plotly = await loadPlotly(host, model);
  let drawing = Promise.resolve();
  const draw = () => {
    drawing = drawing.then(() => {
      const { data = [], layout = {} } = model.get("figure") || {};
      return Plotly.react(div, data, layout, { displaylogo: false, responsive: false });
    });
    return drawing;
  };
  await draw();
  model.on("change:figure", draw);
  div.on("plotly_click", (event) => {
    const points = (event.points || []).map((p) => ({
      curve: p.curveNumber, index: Array.isArray(p.pointIndex) ? p.pointIndex : p.pointNumber,
      x: p.x, y: p.y }));
    model.send({ event: "click", points });
  });
  return () => Plotly.purge(div);
}

export default { render };
