// Small DOM helpers shared by the screens.

import { t } from "./i18n.js";

/** An element: h("div.cls#id", {attr: v, onclick: f}, ...children). */
export function h(spec, attrs = {}, ...children) {
  const tag = /^[a-z0-9]*/i.exec(spec)[0] || "div";
  const el = document.createElement(tag);
  const classes = [];
  for (const [, sigil, name] of spec.slice(tag.length).matchAll(/([.#])([^.#]+)/g)) {
    if (sigil === "#") el.id = name; else classes.push(name);
  }
  if (classes.length) el.className = classes.join(" ");
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(el.dataset, v);
    else if (k in el && typeof v !== "string") el[k] = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) if (c !== null && c !== undefined && c !== false) el.append(c instanceof Node ? c : String(c));
  return el;
}

/** Shows an API error next to the form field it names (`name="field"`), or at the form's end. */
export function showError(form, e) {
  for (const old of form.querySelectorAll(".field-error.api")) old.remove();
  const msg = h("p.field-error.api", {}, e.message || String(e));
  const field = e.field && form.querySelector(`[name="${e.field.split(/[.[]/)[0]}"]`);
  if (field) field.closest("label")?.after(msg) ?? field.after(msg);
  else form.append(msg);
  return msg;
}

/** A short toast in the corner. */
export function toast(text, kind = "") {
  const el = h("div.toast" + (kind ? "." + kind : ""), {}, text);
  document.getElementById("toasts").append(el);
  setTimeout(() => el.remove(), 6000);
}

/** HH:MM:SS.mmm of a time in ms, local. */
export function clock(ms, withMs = true) {
  const d = new Date(ms);
  const p = (n, w = 2) => String(n).padStart(w, "0");
  return `${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}` + (withMs ? "." + p(d.getMilliseconds(), 3) : "");
}

/**
 * A modal form: `title`, `fields`, Cancel and `submitLabel`. `onSubmit(form, dialog)` runs on
 * submit; what it throws is shown in the form (beside the field an API error names). The
 * dialog removes itself when closed; `id` names it for tests and styles.
 */
export function dialog(title, fields, submitLabel, onSubmit, id = "") {
  const form = h("form", {}, h("h3", {}, title), ...fields,
    h("div.row", {}, h("button", { type: "button", onclick: () => dlg.close() }, t("ev.cancel")),
      h("button.primary", { name: "submit" }, submitLabel)));
  const dlg = h("dialog" + (id ? "#" + id : ""), {}, form);
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    try { await onSubmit(form, dlg); } catch (err) { showError(form, err); }
  });
  dlg.addEventListener("close", () => dlg.remove());
  document.body.append(dlg);
  dlg.showModal();
  return dlg;
}
