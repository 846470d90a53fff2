// Approvals inbox: the tool calls waiting for my decision, with their frozen arguments.
import { api, root } from "./api.js";
import { clear, field, h, nextId, say, sayError, when } from "./dom.js";

const REFRESH_MS = 5000;

function approvalCard(approval, reload) {
  const comment = h("textarea", { name: "comment", rows: 2, maxlength: 2000 });
  const titleId = nextId("approval");
  async function decide(decision, button) {
    for (const b of card.querySelectorAll("button")) b.disabled = true;
    try {
      const body = { decision };
      if (comment.value.trim()) body.comment = comment.value.trim();
      await api(`/api/v1/approvals/${encodeURIComponent(approval.id)}`, { method: "POST", json: body });
      say(`${decision === "approve" ? "Approved" : "Denied"}: ${approval.tool}.`, "ok");
      await reload();
    } catch (err) {
      sayError(err);
      for (const b of card.querySelectorAll("button")) b.disabled = false;
      button.focus();
    }
  }
  const approve = h("button", { type: "button", class: "primary" }, "Approve");
  const deny = h("button", { type: "button", class: "danger" }, "Deny");
  approve.addEventListener("click", () => decide("approve", approve));
  deny.addEventListener("click", () => decide("deny", deny));
  const card = h(
    "article",
    { class: "card stack", "aria-labelledby": titleId, dataset: { approval: approval.id } },
    h("h2", { id: titleId }, approval.tool),
    h("p", { class: "muted" }, `Requested by ${approval.requester}; expires ${when(approval.expires_at)}`),
    approval.reason ? h("p", { class: "warning" }, approval.reason) : null,
    h("h3", {}, "Arguments"),
    h("pre", { "aria-label": `Arguments of ${approval.tool}` }, JSON.stringify(approval.arguments, null, 2)),
    approval.context_documents && approval.context_documents.length
      ? h(
          "div",
          {},
          h("h3", {}, "Proposed after reading"),
          h("ul", {}, approval.context_documents.map((d) => h("li", {}, d.title || d.document_id || JSON.stringify(d)))),
        )
      : null,
    approval.approver_group ? h("p", { class: "muted" }, `Approver group: ${approval.approver_group}`) : null,
    field("Comment (optional)", comment),
    h("div", { class: "row" }, approve, deny, h("a", { href: `${root}/chat?session=${encodeURIComponent(approval.session_id)}` }, "Open the chat")),
  );
  return card;
}

export async function render(view) {
  const list = h("div", { class: "stack" });
  const refresh = h("button", { type: "button" }, "Refresh");
  view.append(h("div", { class: "row" }, refresh), list);
  let busy = false;

  async function reload() {
    if (busy) return;
    busy = true;
    try {
      const { approvals } = await api("/api/v1/approvals");
      const pending = approvals.filter((a) => a.status === "pending");
      // keep a card being filled in: rebuild only when the set of approvals changed
      const ids = pending.map((a) => a.id).join(",");
      if (list.dataset.ids === ids && ids) return;
      list.dataset.ids = ids;
      clear(list);
      if (!pending.length) list.append(h("p", { class: "muted" }, "Nothing is waiting for your decision."));
      for (const approval of pending) list.append(approvalCard(approval, reload));
    } catch (err) {
      sayError(err);
    } finally {
      busy = false;
    }
  }

  refresh.addEventListener("click", reload);
  await reload();
  setInterval(() => {
    if (!document.hidden) reload();
  }, REFRESH_MS);
}
