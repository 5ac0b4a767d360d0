// Type-ahead over every taxonomy label: an input and its suggestion list (the single view's and the grid's).

export function matches(labels, text) {
  const needle = text.trim().toLowerCase();
  if (!needle) return [];
  const starts = labels.filter((label) => label.toLowerCase().startsWith(needle));
  const words = labels.filter(
    (label) => !starts.includes(label) && label.toLowerCase().split(/[\s/]+/).some((word) => word.startsWith(needle)),
  );
  const anywhere = labels.filter(
    (label) => !starts.includes(label) && !words.includes(label) && label.toLowerCase().includes(needle),
  );
  return [...starts, ...words, ...anywhere];
}

export class Picker {
  // choose(label) is called with the picked label; say(text) reports "no match".
  constructor(input, list, { labels, choose, say }) {
    Object.assign(this, { input, list, labels, choose, say, suggestions: [], highlighted: 0 });
    input.addEventListener("input", () => this.update());
  }

  get open() {
    return document.activeElement === this.input;
  }

  start(character) {
    this.input.focus();
    this.input.value = character;
    this.update();
  }

  update() {
    this.suggestions = matches(this.labels(), this.input.value);
    this.highlighted = 0;
    this.render();
  }

  render() {
    this.list.replaceChildren();
    this.suggestions.forEach((label, i) => {
      const item = document.createElement("li");
      item.textContent = label;
      item.role = "option";
      item.id = `${this.list.id}-${i}`;
      item.setAttribute("aria-selected", String(i === this.highlighted));
      item.addEventListener("mousedown", (event) => {
        event.preventDefault();
        this.choose(label);
      });
      this.list.append(item);
    });
    this.list.hidden = this.suggestions.length === 0;
    this.input.setAttribute("aria-expanded", String(!this.list.hidden));
    if (!this.list.hidden) this.input.setAttribute("aria-activedescendant", `${this.list.id}-${this.highlighted}`);
  }

  close() {
    this.input.value = "";
    this.suggestions = [];
    this.render();
    this.input.blur();
  }

  onKey(event) {
    if (event.key === "ArrowDown" || event.key === "ArrowUp") {
      event.preventDefault();
      if (!this.suggestions.length) return;
      const step = event.key === "ArrowDown" ? 1 : -1;
      this.highlighted = (this.highlighted + step + this.suggestions.length) % this.suggestions.length;
      this.render();
    } else if (event.key === "Enter") {
      event.preventDefault();
      if (event.repeat) return;
      const label = this.suggestions[this.highlighted];
      if (label) this.choose(label);
      else this.say("No label matches; keep typing or press Esc.", "error");
    } else if (event.key === "Escape" || (event.key === "Backspace" && !this.input.value)) {
      event.preventDefault();
      this.close();
    }
  }
}
