// Evidence: export a selected range (reason required) with progress from the event stream and
// the node's verification of the finished package; holds created from a selection, listed, and
// released with a reason.

import { api, follow, iso, mediaToken } from "./api.js";
import { clock, dialog, h, toast } from "./dom.js";
import { t } from "./i18n.js";

/** Export dialog for `camera` over `[start, end]` (ms). */
export function exportDialog(camera, [start, end]) {
  const reason = h("textarea", { name: "reason", rows: 2, required: true });
  const status = h("div#export-status");
  dialog(t("ev.exportTitle"), [
    h("p", {}, `${camera.name} · ${new Date(start).toLocaleDateString()} ${clock(start, false)} – ${clock(end, false)}`),
    h("label", {}, t("ev.reason"), reason), status,
  ], t("ev.start"), async (form) => {
    const job = await api("/api/v1/exports", { method: "POST", body: { camera: camera.id, start: iso(start), end: iso(end), reason: reason.value } });
    form.querySelector("[name=submit]").disabled = true;
    const meter = h("div", { style: "width: 0%" });
    const label = h("span", {}, t("ev.progress", { p: 0 }));
    status.replaceChildren(label, h("div.bar-meter", {}, meter));
    let finished = false;
    const finish = async (j) => {
      if (finished) return;
      finished = true;
      stop();
      clearInterval(poll);
      if (j.status !== "done") { status.replaceChildren(h("p.badtext", {}, j.error || j.status)); return; }
      meter.style.width = "100%";
      const v = await api(`/api/v1/exports/${encodeURIComponent(job.id)}/verify`).catch((e) => ({ intact: false, problems: [e.message] }));
      const token = await mediaToken(camera.id, "export").catch(() => null);
      const href = `/api/v1/exports/${encodeURIComponent(job.id)}/download` + (token ? `?token=${encodeURIComponent(token)}` : "");
      status.replaceChildren(
        h("p", {}, t("ev.done"), " · ", h("a#download", { href, download: "" }, t("ev.download"))),
        h("p#verification." + (v.intact ? "good" : "badtext"), { dataset: { intact: String(!!v.intact) } },
          v.intact ? t("ev.verified") : t("ev.notVerified") + ": " + (v.problems || []).join("; ")),
        h("pre.manifest", {}, JSON.stringify(v.manifest, null, 2)));
    };
    // Progress comes from polling; completion from the event stream (or the poll, whichever first).
    const stop = follow((kind, data) => {
      if ((kind === "export.done" || kind === "export.failed") && data.export === job.id) {
        api(`/api/v1/exports/${encodeURIComponent(job.id)}`).then(finish);
      }
    });
    const poll = setInterval(async () => {
      const j = await api(`/api/v1/exports/${encodeURIComponent(job.id)}`).catch(() => null);
      if (!j) return;
      const p = Math.round((j.progress || 0) * 100);
      meter.style.width = p + "%";
      label.textContent = t("ev.progress", { p });
      if (j.status === "done" || j.status === "failed") finish(j);
    }, 1000);
  });
}

/** Hold dialog for `camera` over `[start, end]`. */
export function holdDialog(camera, [start, end], onDone) {
  const reason = h("textarea", { name: "reason", rows: 2, required: true });
  dialog(t("ev.holdTitle"), [
    h("p", {}, `${camera.name} · ${clock(start, false)} – ${clock(end, false)}`),
    h("label", {}, t("ev.reason"), reason),
  ], t("ev.create"), async (_, dlg) => {
    await api("/api/v1/holds", { method: "POST", body: { camera: camera.id, start: iso(start), end: iso(end), reason: reason.value } });
    dlg.close();
    toast(t("toast.saved"), "good");
    onDone();
  });
}

/** The holds table inside `el`, each with a release button that asks why. */
export function holdsPanel(el, holds, onChange) {
  if (!holds.length) { el.replaceChildren(); return; }
  el.replaceChildren(h("h4", {}, t("ev.holds")), h("table.list#holds", {},
    ...holds.map((x) => h("tr", {},
      h("td", {}, x.camera), h("td", {}, `${new Date(x.start).toLocaleString()} – ${clock(Date.parse(x.end), false)}`),
      h("td", {}, x.reason), h("td.dim", {}, x.created_by),
      h("td", {}, h("button", {
        onclick: () => {
          const reason = h("textarea", { name: "reason", rows: 2, required: true });
          dialog(t("ev.release"), [h("label", {}, t("ev.releaseReason"), reason)], t("ev.release"), async (_, dlg) => {
            await api(`/api/v1/holds/${encodeURIComponent(x.id)}?reason=${encodeURIComponent(reason.value)}`, { method: "DELETE" });
            dlg.close();
            onChange();
          });
        },
      }, t("ev.release")))))));
}
