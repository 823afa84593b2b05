// Health: cameras online/total per organisation, disks with retention forecast against each
// tier's guarantee, alarms, links to lower nodes. Refreshed every 5 s.

import { api } from "./api.js";
import { h } from "./dom.js";
import { t } from "./i18n.js";

const gb = (b) => (b / 1e9).toFixed(1) + " GB";

export function healthScreen(ctx) {
  const el = h("div.panel#health");
  const render = async () => {
    const hl = await api("/api/v1/health").catch((e) => ({ error: e.message }));
    if (hl.error) { el.replaceChildren(h("p.badtext", {}, hl.error)); return; }
    const orgs = new Map();
    for (const c of ctx.cameras.values()) {
      const top = (c.org || "-").split("/").slice(0, 3).join("/");
      const o = orgs.get(top) || { on: 0, all: 0 };
      o.all++; if (c.status === "online") o.on++;
      orgs.set(top, o);
    }
    const cards = h("div.cards", {},
      h("div.card#cameras-online", {}, h("div.dim", {}, t("health.cameras")), h("div.big", {}, `${hl.cameras.online} / ${hl.cameras.total}`),
        h("div.bar-meter", {}, h("div", { style: `width: ${Math.round(hl.cameras.online_rate * 100)}%` }))),
      h("div.card", {}, h("div.dim", {}, "status"), h("div.big." + (hl.status === "ok" ? "good" : "warntext"), {}, hl.status)),
      h("div.card", {}, h("div.dim", {}, "holds"), h("div.big", {}, String(hl.holds))));
    const disks = h("table.list", {}, h("tr", {}, ...["path", "free", "standard", "key"].map((x) => h("th", {}, x))),
      ...hl.disks.map((d) => h("tr", {}, h("td", {}, d.path), h("td", {}, `${gb(d.free_bytes)} / ${gb(d.total_bytes)}`),
        ...["standard", "key"].map((tier) => {
          const x = d.tiers[tier];
          return h("td." + (x.guarantee_met ? "good" : "badtext"), {}, `${x.forecast_days} d / ${x.guarantee_days} d`);
        }))));
    const byOrg = h("table.list", {}, ...[...orgs].sort().map(([o, v]) => h("tr", {}, h("td", {}, o), h("td", {}, `${v.on} / ${v.all}`))));
    const alarms = hl.alarms.length ? h("ul", {}, ...hl.alarms.slice(-20).reverse().map((a) => h("li", {}, `${new Date(a.at).toLocaleString()} ${a.message}`)))
      : h("p.dim", {}, t("health.none"));
    const links = (hl.links || []).length ? h("table.list", {}, ...hl.links.map((l) => h("tr", {},
      h("td", {}, l.id), h("td", {}, l.state), h("td", {}, `${l.in_use_mbps ?? 0} / ${l.budget_mbps} Mbit/s`), h("td", {}, `pulls ${l.pulls}`)))) : null;
    el.replaceChildren(cards, h("h3", {}, t("health.byOrg")), byOrg, h("h3", {}, t("health.disks") + " · " + t("health.retention")), disks,
      h("h3", {}, t("health.alarms")), alarms, links && h("h3", {}, "links"), links);
  };
  render();
  const timer = setInterval(render, 5000);
  return { el, refresh() {}, stats() { return []; }, destroy() { clearInterval(timer); } };
}
