// Administration: users, departments, groups, grants, API tokens, and the audit log with filters
// and the hash chain's verification. Every form posts to the public admin API and shows the
// API's message next to the field it names.

import { api, iso, q } from "./api.js";
import { h, showError, toast } from "./dom.js";
import { t } from "./i18n.js";

const ROLES = ["viewer", "operator", "dispatcher", "auditor", "admin"];
const ACTIONS = ["live", "playback", "export", "hold", "ptz", "admin", "audit", "metrics"];

/** A form with labelled inputs; `submit(values)` returns a promise. */
function form(id, fields, label, submit) {
  const inputs = fields.map(([name, kind, opts]) => {
    let input;
    if (kind === "select") input = h("select", { name }, ...opts.map((o) => h("option", { value: o }, o)));
    else if (kind === "actions") input = h("span", { dataset: { name } }, ...ACTIONS.map((a) => h("label", { style: "flex-direction: row; gap: 2px" }, h("input", { type: "checkbox", name, value: a }), a)));
    else input = h("input", { name, type: kind || "text", placeholder: opts || "" });
    return h("label", {}, name, input);
  });
  const f = h("form.inline#" + id, {}, ...inputs, h("button.primary", {}, label));
  f.addEventListener("submit", async (e) => {
    e.preventDefault();
    const v = {};
    for (const [name, kind] of fields) {
      if (kind === "actions") v[name] = [...f.querySelectorAll(`input[name=${name}]:checked`)].map((x) => x.value);
      else v[name] = f.querySelector(`[name=${name}]`).value;
    }
    try { await submit(v); f.reset(); for (const old of f.querySelectorAll(".field-error.api")) old.remove(); } catch (err) { showError(f, err); }
  });
  return f;
}

const table = (id, head, rows) => h("table.list#" + id, {}, h("tr", {}, ...head.map((x) => h("th", {}, x))), ...rows);
const del = (path, after) => h("button", { onclick: async () => { try { await api(path, { method: "DELETE" }); after(); } catch (e) { toast(e.message, "bad"); } } }, t("admin.delete"));
const opt = (s) => (s === "" ? undefined : s);

const tabs = {
  async users(el, again) {
    const users = await api("/api/v1/users");
    el.replaceChildren(
      form("new-user", [["name"], ["password", "password"], ["role", "select", ROLES], ["department", "text", "id"]], t("admin.create"),
        async (v) => { await api("/api/v1/users", { method: "POST", body: { ...v, department: opt(v.department) } }); again(); }),
      table("users", ["name", "role", "department", "disabled", ""], users.map((u) => h("tr", {},
        h("td", {}, u.name), h("td", {}, u.role), h("td", {}, u.department || ""), h("td", {}, u.disabled ? "yes" : ""),
        h("td", {}, u.source === "config" ? h("span.dim", {}, "config") : del(`/api/v1/users/${encodeURIComponent(u.name)}`, again))))));
  },
  async departments(el, again) {
    const list = await api("/api/v1/departments");
    el.replaceChildren(
      form("new-department", [["id"], ["name"], ["parent"]], t("admin.create"),
        async (v) => { await api("/api/v1/departments", { method: "POST", body: { id: v.id, name: opt(v.name), parent: opt(v.parent) } }); again(); }),
      table("departments", ["id", "name", "parent", ""], list.map((d) => h("tr", {}, h("td", {}, d.id), h("td", {}, d.name || ""),
        h("td", {}, d.parent || ""), h("td", {}, del(`/api/v1/departments/${encodeURIComponent(d.id)}`, again))))));
  },
  async groups(el, again) {
    const list = await api("/api/v1/groups");
    el.replaceChildren(
      form("new-group", [["id"], ["name"], ["cameras", "text", "cam0,cam1"]], t("admin.create"),
        async (v) => { await api("/api/v1/groups", { method: "POST", body: { id: opt(v.id), name: opt(v.name), cameras: v.cameras.split(",").map((s) => s.trim()).filter(Boolean) } }); again(); }),
      table("groups", ["id", "name", "cameras", ""], list.map((g) => h("tr", {}, h("td", {}, g.id), h("td", {}, g.name || ""),
        h("td", {}, (g.cameras || []).join(", ")), h("td", {}, del(`/api/v1/groups/${encodeURIComponent(g.id)}`, again))))));
  },
  async grants(el, again) {
    const list = await api("/api/v1/grants");
    el.replaceChildren(
      form("new-grant", [["subject", "text", "user:NAME | role:R | department:ID"], ["actions", "actions"], ["resource", "text", "camera:ID | group:ID | org:PATH | *"]], t("admin.create"),
        async (v) => { await api("/api/v1/grants", { method: "POST", body: v }); again(); }),
      table("grants", ["id", "subject", "actions", "resource", ""], list.map((g) => h("tr", {}, h("td.dim", {}, g.id), h("td", {}, g.subject),
        h("td", {}, (g.actions || []).join(", ")), h("td", {}, g.resource), h("td", {}, g.source === "config" ? h("span.dim", {}, "config") : del(`/api/v1/grants/${encodeURIComponent(g.id)}`, again))))));
  },
  async tokens(el, again) {
    const list = await api("/api/v1/tokens");
    const secret = h("p.good#token-secret");
    el.replaceChildren(
      form("new-token", [["name"], ["owner"], ["actions", "actions"], ["resources", "text", "* or camera:ID,org:PATH"], ["expires_at", "datetime-local"]], t("admin.create"),
        async (v) => {
          const r = await api("/api/v1/tokens", { method: "POST", body: {
            name: v.name, owner: opt(v.owner), actions: v.actions, resources: v.resources.split(",").map((s) => s.trim()).filter(Boolean),
            expires_at: v.expires_at ? iso(Date.parse(v.expires_at)) : undefined,
          } });
          await again();
          el.prepend(h("p.good#token-secret", {}, t("admin.secret", { s: r.token })));
        }),
      secret,
      table("tokens", ["id", "name", "owner", "actions", "resources", "expires", ""], list.map((x) => h("tr", {}, h("td.dim", {}, x.id), h("td", {}, x.name),
        h("td", {}, x.owner), h("td", {}, (x.actions || []).join(", ")), h("td", {}, (x.resources || []).join(", ")), h("td", {}, x.expires_at || ""),
        h("td", {}, del(`/api/v1/tokens/${encodeURIComponent(x.id)}`, again))))));
  },
  async audit(el) {
    const chain = h("p#chain", {}, "…");
    api("/api/v1/audit/verify").then((v) => {
      chain.className = v.intact ? "good" : "badtext";
      chain.dataset.intact = String(v.intact);
      chain.textContent = v.intact ? t("admin.chainOk", { n: v.entries, head: (v.head || "").slice(0, 16) + "…" }) : t("admin.chainBad", { e: v.error });
    }).catch((e) => { chain.textContent = e.message; });
    const results = h("div");
    const now = Date.now();
    const local = (ms) => new Date(ms - new Date().getTimezoneOffset() * 60e3).toISOString().slice(0, 16);
    const f = form("audit-filter", [["start", "datetime-local"], ["end", "datetime-local"], ["user"], ["camera"], ["action"]], t("admin.filter"), async (v) => {
      const rows = await api(`/api/v1/audit?${q({ start: iso(Date.parse(v.start || local(now - 86400e3))), end: iso(Date.parse(v.end || local(now + 60e3))), user: v.user, camera: v.camera, action: v.action, limit: 5000 })}`);
      const list = rows.entries || rows;
      results.replaceChildren(table("audit", ["seq", "at", "actor", "action", "camera", "target", "outcome", "reason"],
        list.slice(-500).reverse().map((r) => h("tr", {}, h("td.dim", {}, r.seq), h("td", {}, new Date(r.at).toLocaleString()), h("td", {}, r.actor + (r.on_behalf_of ? ` (${r.on_behalf_of})` : "")),
          h("td", {}, r.action), h("td", {}, r.camera || ""), h("td", {}, r.target || ""), h("td", {}, r.outcome), h("td", {}, r.reason || "")))));
    });
    el.replaceChildren(chain, f, results);
    f.requestSubmit();
  },
};

export function adminScreen() {
  const body = h("div");
  const buttons = [];
  const open = async (name) => {
    buttons.forEach((b) => b.classList.toggle("on", b.dataset.tab === name));
    const again = () => open(name);
    try { await tabs[name](body, again); } catch (e) { body.replaceChildren(h("p.badtext", {}, e.message)); }
  };
  for (const name of Object.keys(tabs)) buttons.push(h("button", { dataset: { tab: name }, onclick: () => open(name) }, t("admin." + name)));
  open("users");
  return { el: h("div.panel#admin", {}, h("div.tabs", {}, ...buttons), body), refresh() {}, stats() { return []; }, destroy() {} };
}
