// Keys that mean the same on Mac and PC keyboards, shown with the labels printed on the keys.
// - Reject: Delete or Backspace. The Mac key labelled "delete" sends Backspace; a PC has both keys. Neither undoes.
// - Undo: Ctrl+Z, or ⌘Z on a Mac (Ctrl+Z there too).
// - Held keys never repeat a decision: auto-repeat events are ignored, and Enter must be released before it
//   confirms again.

export const isMac = /Mac|iPhone|iPad/.test(
  (navigator.userAgentData && navigator.userAgentData.platform) || navigator.platform || "",
);

export function showKeyLabels(root = document) {
  const labels = { reject: isMac ? "delete" : "Del", undo: isMac ? "⌘Z" : "Ctrl+Z" };
  for (const element of root.querySelectorAll("kbd[data-key]")) element.textContent = labels[element.dataset.key];
}

let enterHeld = false;
document.addEventListener("keyup", (event) => {
  if (event.key === "Enter") enterHeld = false;
});
window.addEventListener("blur", () => {
  enterHeld = false;
});

// The decision a key press asks for ("confirm" | "reject" | "undo"), or null. A repeat never asks for one.
export function decisionKey(event) {
  if (event.altKey) return null;
  if ((event.ctrlKey || event.metaKey) && event.key.toLowerCase() === "z") return event.repeat ? "ignored" : "undo";
  if (event.ctrlKey || event.metaKey) return null;
  if (event.key === "Enter") {
    if (event.repeat || enterHeld) return "ignored";
    enterHeld = true;
    return "confirm";
  }
  if (event.key === "Delete" || event.key === "Backspace") return event.repeat ? "ignored" : "reject";
  return null;
}
