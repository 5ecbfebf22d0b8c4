/* omnirec storefront widget: recommendations in any page with one script tag, no framework.

   <script src="https://recs.example/widget.js" defer></script>
   <omnirec-recommendations api-key="PUBLIC_KEY" customer="C000123" placement="home"
       limit="8"></omnirec-recommendations>
   <omnirec-similar api-key="PUBLIC_KEY" item="I000042" customer="C000123"></omnirec-similar>
   <omnirec-cart-complements api-key="PUBLIC_KEY" customer="C000123"></omnirec-cart-complements>

   Attributes: api-key (a key with the `public` scope only), customer (any alias the host page
   already knows; without one the visitor sees what is trending and nothing is posted), placement,
   limit, channel (default web), store (click and collect), item-href (a page for items the
   catalogue has no url for, e.g. "/p/{item_id}"), currency (ISO code, for prices).
   It posts an impression for each card once at least half of it has been visible, once per
   answer, and a click when a card is followed, both quoting the answer's recommendation id.
   Theme it with CSS custom properties on the element or any ancestor: --omnirec-columns,
   --omnirec-gap, --omnirec-font, --omnirec-text, --omnirec-muted, --omnirec-card-bg,
   --omnirec-border, --omnirec-radius, --omnirec-accent, --omnirec-image-ratio.
   Everything from the catalogue is set as text (never as markup); links and images must be
   http(s). The widget keeps no cookie and stores nothing in the browser. */
(() => {
  "use strict";
  if (window.customElements === undefined || customElements.get("omnirec-recommendations")) {
    return;
  }
  const script = document.currentScript;
  const SERVICE = new URL(script && script.src ? script.src : location.href).origin;
  const FLUSH_MS = 250; // impressions seen within this time go in one request
  const STYLE = `
    :host { display: block; font: var(--omnirec-font, inherit); color: var(--omnirec-text, inherit); }
    ol { list-style: none; margin: 0; padding: 0; display: grid;
         grid-template-columns: repeat(var(--omnirec-columns, 4), minmax(0, 1fr));
         gap: var(--omnirec-gap, 12px); }
    li { background: var(--omnirec-card-bg, #fff); border: 1px solid var(--omnirec-border, #ddd);
         border-radius: var(--omnirec-radius, 8px); overflow: hidden; }
    a, .card { display: flex; flex-direction: column; gap: 4px; color: inherit;
               text-decoration: none; padding: 8px; height: 100%; box-sizing: border-box; }
    a:hover .name { color: var(--omnirec-accent, #06c); text-decoration: underline; }
    .image { aspect-ratio: var(--omnirec-image-ratio, 1); width: 100%; object-fit: cover;
             background: var(--omnirec-border, #eee); border-radius: calc(var(--omnirec-radius, 8px) / 2); }
    .name { font-weight: 600; overflow-wrap: anywhere; }
    .price { color: var(--omnirec-accent, #06c); }
    .reason { color: var(--omnirec-muted, #666); font-size: 0.85em; }
    .empty { color: var(--omnirec-muted, #666); }`;

  function web(address) {
    if (!address) return null;
    try {
      const url = new URL(address, location.href);
      return url.protocol === "https:" || url.protocol === "http:" ? url.href : null;
    } catch (_) {
      return null;
    }
  }

  class OmnirecList extends HTMLElement {
    static get observedAttributes() {
      return ["customer", "item", "placement", "limit", "channel", "store"];
    }

    constructor() {
      super();
      this.attachShadow({ mode: "open" });
      this._pending = [];
      this._seen = new Set();
      this._observer = null;
      this._timer = null;
    }

    connectedCallback() { this._load(); }
    disconnectedCallback() { this._flush(); if (this._observer) this._observer.disconnect(); }
    attributeChangedCallback(_name, before, after) {
      if (this.isConnected && before !== after) this._load();
    }

    get channel() { return this.getAttribute("channel") || "web"; }
    get customer() { return this.getAttribute("customer") || null; }

    /* the route and query of this form of the widget (overridden below) */
    route() {
      const customer = this.customer;
      return customer
        ? `/v1/customers/${encodeURIComponent(customer)}/recommendations`
        : "/v1/trending";
    }

    query() {
      const params = new URLSearchParams();
      params.set("limit", this.getAttribute("limit") || "8");
      params.set("channel", this.channel);
      for (const [attribute, name] of [["placement", "placement"], ["store", "store_id"]]) {
        const value = this.getAttribute(attribute);
        if (value) params.set(name, value);
      }
      return params;
    }

    async _load() {
      const key = this.getAttribute("api-key");
      if (!key) return;
      const ask = `${SERVICE}${this.route()}?${this.query()}`;
      let answer;
      try {
        const reply = await fetch(ask, { headers: { "X-API-Key": key }, mode: "cors" });
        if (!reply.ok) throw new Error(`HTTP ${reply.status}`);
        answer = await reply.json();
      } catch (error) {
        this._render(null);
        this.dispatchEvent(new CustomEvent("omnirec-error", { detail: String(error) }));
        return;
      }
      this._render(answer);
      this.dispatchEvent(new CustomEvent("omnirec-rendered", { detail: answer }));
    }

    _render(answer) {
      const root = this.shadowRoot;
      root.replaceChildren();
      const style = document.createElement("style");
      style.textContent = STYLE;
      root.append(style);
      if (this._observer) this._observer.disconnect();
      this._seen = new Set();
      const items = answer && Array.isArray(answer.items) ? answer.items : [];
      this.dataset.recommendationId = answer ? answer.recommendation_id || "" : "";
      if (!items.length) {
        const none = document.createElement("p");
        none.className = "empty";
        none.part = "empty";
        none.textContent = this.getAttribute("empty-text") || "";
        root.append(none);
        return;
      }
      const list = document.createElement("ol");
      list.part = "list";
      const template = this.getAttribute("item-href");
      const money = this._money();
      items.forEach((item, index) => {
        const card = document.createElement("li");
        card.part = "card";
        card.dataset.item = item.item_id;
        card.dataset.position = String(index + 1);
        const page = web(item.url) ||
          (template ? web(template.split("{item_id}").join(encodeURIComponent(item.item_id))) : null);
        const body = document.createElement(page ? "a" : "div");
        body.className = "card";
        if (page) {
          body.href = page;
          body.addEventListener("click", () => this._click(answer, item, index + 1));
        }
        const image = web(item.image_url);
        if (image) {
          const img = document.createElement("img");
          img.className = "image";
          img.loading = "lazy";
          img.alt = "";
          img.src = image;
          body.append(img);
        }
        const name = document.createElement("span");
        name.className = "name";
        name.textContent = String(item.name ?? item.item_id);
        const price = document.createElement("span");
        price.className = "price";
        price.textContent = typeof item.price === "number" ? money(item.price) : "";
        body.append(name, price);
        if (this.hasAttribute("reasons") && Array.isArray(item.reasons) && item.reasons.length) {
          const why = document.createElement("span");
          why.className = "reason";
          why.textContent = String(item.reasons[0]);
          body.append(why);
        }
        card.append(body);
        list.append(card);
      });
      root.append(list);
      this._watch(answer, list);
    }

    _money() {
      const currency = this.getAttribute("currency");
      if (currency) {
        try {
          const format = new Intl.NumberFormat(undefined, { style: "currency", currency });
          return (value) => format.format(value);
        } catch (_) { /* an unknown code: plain numbers */ }
      }
      return (value) => value.toFixed(2);
    }

    /* an impression per card once half of it has been in view; once per answer */
    _watch(answer, list) {
      if (!this.customer || !("IntersectionObserver" in window)) return;
      this._observer = new IntersectionObserver((entries) => {
        for (const entry of entries) {
          if (!entry.isIntersecting || entry.intersectionRatio < 0.5) continue;
          const card = entry.target;
          this._observer.unobserve(card);
          if (this._seen.has(card.dataset.item)) continue;
          this._seen.add(card.dataset.item);
          this._queue(this._record("impression", answer, card.dataset.item, Number(card.dataset.position)));
        }
      }, { threshold: [0.5] });
      for (const card of list.children) this._observer.observe(card);
    }

    _record(type, answer, itemId, position) {
      const record = {
        type,
        customer_id: this.customer,
        item_id: itemId,
        recommendation_id: answer.recommendation_id,
        position,
        channel: this.channel,
      };
      if (answer.placement) record.placement = answer.placement;
      return record;
    }

    _click(answer, item, position) {
      if (!this.customer) return;
      this._queue(this._record("click", answer, item.item_id, position));
      this._flush(); // before the page goes: keepalive carries it through the navigation
    }

    _queue(record) {
      this._pending.push(record);
      if (this._timer === null) this._timer = setTimeout(() => this._flush(), FLUSH_MS);
    }

    _flush() {
      if (this._timer !== null) { clearTimeout(this._timer); this._timer = null; }
      if (!this._pending.length) return;
      const feedback = this._pending.splice(0, this._pending.length);
      fetch(`${SERVICE}/v1/feedback`, {
        method: "POST",
        mode: "cors",
        keepalive: true,
        headers: { "X-API-Key": this.getAttribute("api-key"), "Content-Type": "application/json" },
        body: JSON.stringify({ feedback }),
      }).then((reply) => {
        this.dispatchEvent(new CustomEvent("omnirec-feedback", { detail: { status: reply.status, feedback } }));
      }).catch((error) => {
        this.dispatchEvent(new CustomEvent("omnirec-error", { detail: String(error) }));
      });
    }
  }

  class OmnirecSimilar extends OmnirecList {
    route() { return `/v1/items/${encodeURIComponent(this.getAttribute("item") || "")}/similar`; }
    query() {
      const params = super.query();
      params.delete("channel"); // the similar-items route is the same on every channel
      return params;
    }
  }

  class OmnirecCart extends OmnirecList {
    route() {
      const customer = this.customer;
      return customer ? `/v1/customers/${encodeURIComponent(customer)}/cart/complements` : "/v1/trending";
    }
    query() {
      const params = super.query();
      if (this.customer) params.delete("channel");
      return params;
    }
  }

  customElements.define("omnirec-recommendations", OmnirecList);
  customElements.define("omnirec-similar", OmnirecSimilar);
  customElements.define("omnirec-cart-complements", OmnirecCart);
})();
