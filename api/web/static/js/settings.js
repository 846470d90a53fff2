// Settings: my usage and budget (today / this month), and my API keys (create: the key shown
// once; rotate: the new secret shown once; revoke), all through the REST API.
import { api } from "./api.js";
import { clear, confirmDialog, field, h, nextId, num, say, sayError, table, when } from "./dom.js";

/** What each permission lets a key do (the scopes a key may carry: docs/api.md). */
const SCOPE_HINTS = {
  use_agent: "chat with the agent and use its tools",
  query_kb: "read and search knowledge bases",
  upload_docs: "upload, share and delete documents",
  manage_org_kb: "org knowledge bases and failed operations",
  manage_dept_kb: "department knowledge bases",
  manage_tools: "the tool allowlist",
  view_audit_logs: "the audit trail and usage per user",
  manage_budgets: "users' token budgets",
};

const PERIOD_NAMES = { daily: "daily", monthly: "monthly" };

function money(cost, currency) {
  const digits = cost > 0 && cost < 0.01 ? 6 : 2;
  return `${Number(cost).toFixed(digits)} ${currency}`;
}

function resetsText(p) {
  const at = new Date(p.resets_at);
  if (p.period === "daily") return "it resets at 00:00 UTC";
  return `it resets on ${at.toISOString().slice(0, 10)} at 00:00 UTC`;
}

/** The budget warning the API's ratio calls for (the same words as the chat's budget.warning). */
export function budgetWarning(p, ratio) {
  if (!p.limit_tokens) return null;
  const used = p.total_tokens;
  const share = used / p.limit_tokens;
  if (share < ratio) return null;
  const name = PERIOD_NAMES[p.period] || p.period;
  const counts = `${num(used)} of ${num(p.limit_tokens)} tokens`;
  if (share >= 1) return `You have used your ${name} token budget (${counts}); ${resetsText(p)}.`;
  return `You have used ${Math.floor(share * 100)}% of your ${name} token budget (${counts}); ${resetsText(p)}.`;
}

function periodCard(title, p, usage) {
  const titleId = nextId("period");
  const warning = budgetWarning(p, usage.warning_ratio);
  const rows = [
    ["Used", `${num(p.total_tokens)} tokens (${num(p.prompt_tokens)} prompt, ${num(p.completion_tokens)} completion)`],
    ["Cost", money(p.cost, usage.currency)],
    ["Budget", p.limit_tokens === null ? "Unlimited" : `${num(p.limit_tokens)} tokens`],
    ["In progress", `${num(p.reserved_tokens)} tokens`],
    ["Left", p.remaining_tokens === null ? "Unlimited" : `${num(p.remaining_tokens)} tokens`],
    ["Resets", when(p.resets_at)],
  ];
  return h(
    "section",
    { class: "card stack period", "aria-labelledby": titleId },
    h("h3", { id: titleId }, title),
    h("dl", { class: "facts" }, rows.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)])),
    p.limit_tokens
      ? h("meter", {
          class: "budget-meter",
          min: 0,
          max: p.limit_tokens,
          low: Math.round(p.limit_tokens * usage.warning_ratio),
          high: Math.round(p.limit_tokens * usage.warning_ratio),
          optimum: 0,
          value: Math.min(p.total_tokens, p.limit_tokens),
          "aria-label": `${title}: budget used`,
        })
      : null,
    warning ? h("p", { class: "warning", role: "alert" }, warning) : null,
    p.by_model.length
      ? table(
          `${title} by model`,
          ["Model", "Tokens", "Cost"],
          p.by_model.map((m) => h("tr", {}, h("td", {}, m.model), h("td", {}, num(m.total_tokens)), h("td", {}, money(m.cost, usage.currency)))),
        )
      : null,
  );
}

async function renderUsage(area) {
  const usage = await api("/api/v1/usage");
  clear(area).append(
    h("h2", { id: "usage-title" }, "Usage and budget"),
    h(
      "p",
      { class: "muted" },
      usage.budget_source === "override" ? "An administrator set your token budget." : "Your token budget is the default one.",
    ),
    h("div", { class: "periods" }, periodCard("Today", usage.today, usage), periodCard("This month", usage.this_month, usage)),
  );
}

function secretPanel(holder, key, name, rotated) {
  const input = h("input", { readonly: true, value: key.key, name: "new-key", autocomplete: "off", spellcheck: "false", class: "secret" });
  const copy = h("button", { type: "button" }, "Copy");
  const done = h("button", { type: "button", class: "primary" }, "Done");
  copy.addEventListener("click", async () => {
    input.select();
    try {
      await navigator.clipboard.writeText(input.value);
      say("Key copied.", "ok");
    } catch {
      say("Copy it from the field (the clipboard is not available here).", "error");
    }
  });
  done.addEventListener("click", () => clear(holder));
  const titleId = nextId("secret");
  clear(holder).append(
    h(
      "section",
      { class: "card stack secret-panel", "aria-labelledby": titleId },
      h("h3", { id: titleId }, rotated ? `New secret of ${name}` : `Your new key ${name}`),
      h(
        "p",
        { class: "warning" },
        "Copy this key now: it is shown only once and cannot be shown again.",
        rotated ? " The previous secret has stopped working." : "",
      ),
      field("API key", input, "Send it as: Authorization: Bearer <key>"),
      h("div", { class: "row" }, copy, done),
    ),
  );
  input.focus();
  input.select();
}

function keysArea(me) {
  const area = h("section", { "aria-labelledby": "keys-title" });
  const secret = h("div", {});
  const list = h("div", {});
  const name = h("input", { name: "name", required: true, maxlength: 100, autocomplete: "off" });
  const expires = h("input", { type: "date", name: "expires" });
  const scopes = me.permissions.map((perm) => {
    const box = h("input", { type: "checkbox", name: "scopes", value: perm, id: nextId("scope") });
    return { perm, box };
  });
  const legendId = nextId("scopes");
  const form = h(
    "form",
    { class: "card stack", "aria-labelledby": "create-key-title", novalidate: true },
    h("h3", { id: "create-key-title" }, "Create an API key"),
    field("Name", name, "What it is for, e.g. nightly report"),
    h(
      "fieldset",
      { class: "scopes", "aria-describedby": `${legendId}-hint` },
      h("legend", { id: legendId }, "Scopes"),
      h("p", { class: "hint", id: `${legendId}-hint` }, "What the key may do: at most what you may do yourself."),
      scopes.map(({ perm, box }) =>
        h("div", { class: "check" }, box, h("label", { for: box.id }, h("code", {}, perm), SCOPE_HINTS[perm] ? ` ${SCOPE_HINTS[perm]}` : "")),
      ),
    ),
    field("Expires on (optional)", expires, "Leave empty for the longest time your administrator allows"),
    h("div", { class: "row" }, h("button", { type: "submit", class: "primary" }, "Create API key")),
  );

  async function reload() {
    const { api_keys: keys } = await api("/api/v1/api-keys");
    renderKeys(keys);
  }

  async function rotate(key, button) {
    const ok = await confirmDialog(
      `Rotate ${key.name}?`,
      "A new secret replaces the current one, which stops working now. Scripts using it need the new one.",
      "Rotate",
    );
    if (!ok) return;
    try {
      const fresh = await api(`/api/v1/api-keys/${encodeURIComponent(key.id)}/rotate`, { method: "POST" });
      say(`Rotated ${key.name}.`, "ok");
      secretPanel(secret, fresh, key.name, true);
      await reload();
    } catch (err) {
      sayError(err);
      if (button.isConnected) button.focus();
    }
  }

  async function revoke(key, button) {
    const ok = await confirmDialog(
      `Revoke ${key.name}?`,
      "The key stops working now, for good. Scripts and integrations using it will be refused.",
      "Revoke",
    );
    if (!ok) return;
    try {
      await api(`/api/v1/api-keys/${encodeURIComponent(key.id)}`, { method: "DELETE" });
      say(`Revoked ${key.name}.`, "ok");
      await reload();
    } catch (err) {
      sayError(err);
      if (button.isConnected) button.focus();
    }
  }

  function renderKeys(keys) {
    if (!keys.length) {
      clear(list).append(h("p", { class: "muted" }, "You have no API keys."));
      return;
    }
    const rows = keys.map((key) => {
      const actions = [];
      if (key.status === "active") {
        const rot = h("button", { type: "button", "aria-label": `Rotate ${key.name}` }, "Rotate");
        const rev = h("button", { type: "button", class: "danger", "aria-label": `Revoke ${key.name}` }, "Revoke");
        rot.addEventListener("click", () => rotate(key, rot));
        rev.addEventListener("click", () => revoke(key, rev));
        actions.push(h("div", { class: "row" }, rot, rev));
      }
      return h(
        "tr",
        { dataset: { key: key.id } },
        h("td", {}, key.name, h("br"), h("code", { class: "muted" }, `${key.prefix}…`)),
        h("td", {}, key.scopes.join(", ")),
        h("td", {}, h("span", { class: `badge ${key.status}` }, key.status)),
        h("td", { class: "col-expires-revoked" }, when(key.revoked_at || key.expires_at)),
        h("td", { class: "col-last-used" }, key.last_used_at ? when(key.last_used_at) : "never"),
        h("td", { class: "actions" }, actions),
      );
    });
    clear(list).append(table("My API keys", ["Key", "Scopes", "Status", "Expires / revoked", "Last used", "Actions"], rows));
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const chosen = scopes.filter((s) => s.box.checked).map((s) => s.perm);
    if (!name.value.trim()) {
      say("Name the key.", "error");
      name.focus();
      return;
    }
    if (!chosen.length) {
      say("Choose at least one scope.", "error");
      scopes[0]?.box.focus();
      return;
    }
    const body = { name: name.value.trim(), scopes: chosen };
    if (expires.value) body.expires_at = `${expires.value}T23:59:59Z`;
    try {
      const created = await api("/api/v1/api-keys", { method: "POST", json: body });
      say(`Created the API key ${created.name}.`, "ok");
      form.reset();
      secretPanel(secret, created, created.name, false);
      await reload();
    } catch (err) {
      sayError(err);
    }
  });

  area.append(
    h("h2", { id: "keys-title" }, "API keys"),
    h("p", { class: "muted" }, "Keys let your scripts call the API as you, limited to their scopes."),
    form,
    secret,
    list,
  );
  return { area, reload };
}

export async function render(view, me) {
  const usage = h("section", { "aria-labelledby": "usage-title", class: "stack" });
  const keys = keysArea(me);
  view.append(usage, keys.area);
  await Promise.all([
    renderUsage(usage).catch((err) => {
      clear(usage).append(h("h2", { id: "usage-title" }, "Usage and budget"), h("p", { class: "error" }, "Your usage could not be loaded."));
      sayError(err);
    }),
    keys.reload().catch(sayError),
  ]);
}
