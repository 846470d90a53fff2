// Building the page with DOM calls and textContent: no HTML strings (the one exception is the
// sanitised markdown of markdown.js).

/** h("button", {type: "button", onclick: f}, "Send") */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") el.addEventListener(key.slice(2), value);
    else if (key === "class") el.className = value;
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (value === true) el.setAttribute(key, "");
    else el.setAttribute(key, String(value));
  }
  append(el, children);
  return el;
}

export function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

export function clear(el) {
  while (el.firstChild) el.firstChild.remove();
  return el;
}

let uid = 0;
export function nextId(prefix) {
  uid += 1;
  return `${prefix}-${uid}`;
}

/** A labelled control: <div class="field"><label for=id>text</label><control id=id></div>. */
export function field(label, control, hint) {
  if (!control.id) control.id = nextId("f");
  const parts = [h("label", { for: control.id }, label), control];
  if (hint) {
    const hintEl = h("p", { class: "hint", id: `${control.id}-hint` }, hint);
    control.setAttribute("aria-describedby", hintEl.id);
    parts.push(hintEl);
  }
  return h("div", { class: "field" }, parts);
}

/** The page's live status line (role=status). */
export function say(text, kind = "info") {
  const status = document.getElementById("status");
  if (!status) return;
  status.textContent = text;
  status.dataset.kind = kind;
}

export function sayError(err) {
  const rid = err && err.requestId ? ` (request ${err.requestId})` : "";
  say(`${err && err.message ? err.message : String(err)}${rid}`, "error");
}

export function when(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? String(iso) : d.toLocaleString();
}

export function table(caption, headings, rows) {
  return h(
    "div",
    { class: "table-wrap" },
    h(
      "table",
      {},
      h("caption", {}, caption),
      h("thead", {}, h("tr", {}, headings.map((t) => h("th", { scope: "col", class: `col-${t.toLowerCase().replace(/[^a-z0-9]+/g, "-")}` }, t)))),
      h("tbody", {}, rows),
    ),
  );
}

/**
 * Ask before a destructive step: a modal <dialog> named `title` with `text`, the button
 * `confirmLabel` and **Cancel** (never window.confirm). Resolves true when confirmed.
 */
export function confirmDialog(title, text, confirmLabel, { danger = true } = {}) {
  return new Promise((resolve) => {
    const titleId = nextId("confirm");
    const textId = nextId("confirm-text");
    const yes = h("button", { type: "button", class: danger ? "danger" : "primary" }, confirmLabel);
    const no = h("button", { type: "button" }, "Cancel");
    const dialog = h(
      "dialog",
      { class: "card confirm", "aria-labelledby": titleId, "aria-describedby": textId },
      h("h2", { id: titleId }, title),
      h("p", { id: textId }, text),
      h("div", { class: "row" }, yes, no),
    );
    let answer = false;
    yes.addEventListener("click", () => {
      answer = true;
      dialog.close();
    });
    no.addEventListener("click", () => dialog.close());
    const opener = document.activeElement;
    dialog.addEventListener("close", () => {
      dialog.remove();
      if (opener && opener.isConnected && opener !== document.body) opener.focus();
      resolve(answer);
    });
    document.body.append(dialog);
    dialog.showModal();
    no.focus();
  });
}

// A modal asking for one line of text; resolves to the text, or null when cancelled.
export function promptDialog(title, label, value, submitLabel) {
  return new Promise((resolve) => {
    const titleId = nextId("prompt");
    const input = h("input", { type: "text", required: true, maxlength: "200", value: value || "" });
    const form = h(
      "form",
      { method: "dialog" },
      field(label, input),
      h("div", { class: "row" }, h("button", { type: "submit", class: "primary" }, submitLabel), h("button", { type: "button", value: "cancel" }, "Cancel")),
    );
    const dialog = h("dialog", { class: "card confirm", "aria-labelledby": titleId }, h("h2", { id: titleId }, title), form);
    let answer = null;
    form.addEventListener("submit", (event) => {
      const text = input.value.trim();
      if (!text) {
        event.preventDefault();
        input.focus();
        return;
      }
      answer = text;
    });
    form.querySelector('button[value="cancel"]').addEventListener("click", () => dialog.close());
    const opener = document.activeElement;
    dialog.addEventListener("close", () => {
      dialog.remove();
      if (opener && opener.isConnected && opener !== document.body) opener.focus();
      resolve(answer);
    });
    document.body.append(dialog);
    dialog.showModal();
    input.focus();
    input.select();
  });
}

export function num(n) {
  return n === null || n === undefined ? "" : Number(n).toLocaleString("en");
}
