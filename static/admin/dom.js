// A tiny DOM builder. Text is always set with textContent: nothing from the
// server is ever parsed as HTML (job arguments, channel names, client keys
// are all data).

/** h("td", { class: "num", title: "x" }, "text", childNode, ...) */
export function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs ?? {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key.startsWith("on") && typeof value === "function") {
      node.addEventListener(key.slice(2), value);
    } else if (value === true) node.setAttribute(key, "");
    else node.setAttribute(key, String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.appendChild(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

/** A table from a header row and body rows (each row an array of cells or a <tr>). */
export function table(target, headers, rows, empty = "Nothing to show") {
  const head = h("thead", {}, h("tr", {}, headers.map((text) => h("th", { scope: "col" }, text))));
  const body = h("tbody");
  if (!rows.length) {
    body.appendChild(h("tr", {}, h("td", { colspan: headers.length, class: "empty" }, empty)));
  }
  for (const row of rows) {
    body.appendChild(row instanceof Node ? row : h("tr", {}, row.map(cell)));
  }
  target.replaceChildren(head, body);
}

function cell(value) {
  if (value instanceof Node && value.nodeName === "TD") return value;
  return h("td", {}, value);
}

/** A status chip: h("span", {class: "chip chip-<tone>"}, text). */
export function chip(text, tone, title) {
  return h("span", { class: `chip chip-${tone}`, title }, text);
}

/** A stat: a big number with its label (and an optional note under it). */
export function stat(label, value, note, tone) {
  return h(
    "div",
    { class: `stat${tone ? ` stat-${tone}` : ""}` },
    h("div", { class: "stat-value" }, value),
    h("div", { class: "stat-label" }, label),
    note ? h("div", { class: "stat-note" }, note) : null,
  );
}
