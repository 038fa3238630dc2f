// hubwidgets ThemeProbe: reports the page's theme to Python (dark or light, and the colours
// of text, borders and background, resolved to solid rgb), again whenever the theme changes.

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

function resolve(host, expression) {
  host.style.color = "";
  host.style.color = expression;
  return getComputedStyle(host).color;
}

function read(host) {
  let background = solid(resolve(host, "var(--jp-layout-color0, var(--vscode-editor-background, #ffffff))"));
  if (background === "rgb(0, 0, 0)" && !getComputedStyle(document.body).getPropertyValue("--jp-layout-color0")) {
    background = solid(getComputedStyle(document.body).backgroundColor) || background;
  }
  const under = channels(background);
  const [r, g, b] = under;
  const lightAttr = document.body.dataset.jpThemeLight;
  const dark = lightAttr !== undefined ? lightAttr === "false" : 0.2126 * r + 0.7152 * g + 0.0722 * b < 128;
  const fallbackText = dark ? "#ffffff" : "#212121";
  return {
    dark,
    background,
    font: solid(resolve(host, `var(--jp-content-font-color1, ${fallbackText})`), under),
    muted: solid(resolve(host, `var(--jp-content-font-color2, ${fallbackText})`), under),
    grid: solid(resolve(host, `var(--jp-border-color2, ${dark ? "#424242" : "#e0e0e0"})`), under),
    name: document.body.dataset.jpThemeName || "",
  };
}

function render({ model, el }) {
  const host = document.createElement("span");
  host.style.display = "none";
  el.append(host);
  let last = "";
  const report = () => {
    const theme = read(host);
    const text = JSON.stringify(theme);
    if (text === last) return;
    last = text;
    model.set("theme", theme);
    model.save_changes();
  };
  report();
  const observer = new MutationObserver(report);
  observer.observe(document.body, { attributes: true, attributeFilter: ["data-jp-theme-name", "data-jp-theme-light", "class", "style"] });
  return () => observer.disconnect();
}

export default { render };
