// What outlives a photo on screen: the reviewer's place (kept across a reload or a sign-in), a photo's history,
// and a lead's export of the reviewed photos.
import { api } from "./api.js";

const PLACE_KEY = "review.place";

export function savePlace(state) {
  const place = { filter: state.filter, view: state.view, history: state.history.slice(-50) };
  sessionStorage.setItem(PLACE_KEY, JSON.stringify(place));
}

export function restorePlace(state, form) {
  const place = JSON.parse(sessionStorage.getItem(PLACE_KEY) || "null");
  if (!place) return;
  for (const [name, value] of Object.entries(place.filter || {})) {
    const field = form.elements.namedItem(name);
    if (field && value) field.value = value;
  }
  state.history = place.history || [];
  state.view = place.view === "grid" ? "grid" : "single";
}

export async function renderHistory(photoId, list) {
  const { history } = await api(`/api/photos/${photoId}/history`);
  list.replaceChildren(
    ...history.map((entry) => {
      const item = document.createElement("li");
      const what = entry.action === "undo" ? `undid #${entry.undoes}` : `${entry.action}: ${entry.decision}${entry.human_label ? ` ${entry.human_label}` : ""}`;
      item.textContent = `${entry.at.slice(0, 16).replace("T", " ")} ${entry.by} — ${what}`;
      return item;
    }),
  );
}

// Every decided photo's latest decision as JSON lines (review_api/export.py rows), downloaded by the browser.
export async function exportManifest(say) {
  const rows = [];
  let cursor = null;
  say("Exporting…");
  do {
    const page = await api(`/api/export${cursor ? `?cursor=${encodeURIComponent(cursor)}` : ""}`);
    rows.push(...page.rows);
    cursor = page.cursor;
    say(`Exporting… ${rows.length} photos`);
  } while (cursor);
  const blob = new Blob(rows.map((row) => `${JSON.stringify(row)}\n`), { type: "application/x-ndjson" });
  const link = document.createElement("a");
  link.href = URL.createObjectURL(blob);
  link.download = `reviewed-${new Date().toISOString().slice(0, 10)}.jsonl`;
  link.click();
  URL.revokeObjectURL(link.href);
  say(`Exported ${rows.length} decided photos (rejected ones included, label null).`, "ok");
}
