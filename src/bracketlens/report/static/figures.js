// bracketlens report: each figure drawn when it comes into view, every one before printing.
//
// plotly.js and circuitsvis sit in the page gzipped, in base64, inside
// <script type="text/plain"> elements; each figure's JSON waits in its own
// <script type="application/json"> after an empty placeholder of the figure's size.
// Nothing here runs before the page is parsed and painted once, so the explorer's
// module (which runs at the end of parsing) starts first. The libraries are then
// unpacked (cheap); plotly.js runs when a figure nears the viewport, or once the page
// has been quiet for a while (running it holds the main thread for a second or more,
// which would freeze the explorer as it starts). Figures are drawn one per task,
// those in view first, with Plotly.newPlot from the same data, layout and config as a
// figure drawn at load. A classic script that reads only the document: the page
// works from any folder with no network.
(() => {
  const AHEAD = "400px 0px"; // start drawing a little before a figure scrolls in
  const QUIET_MS = 1500; // after the first paint, how long the explorer has plotly.js's CPU to itself
  const unpacking = new Map(); // library id -> Promise of its source
  const unpacked = new Map(); // library id -> its source
  const running = new Map(); // library id -> Promise resolved once it has run
  const ran = new Set();

  async function gunzip(base64) {
    const binary = atob(base64);
    const bytes = new Uint8Array(binary.length);
    for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
    const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("gzip"));
    return new Response(stream).text();
  }

  function unpack(id) {
    if (!unpacking.has(id)) {
      const packed = document.getElementById(id).textContent.trim();
      unpacking.set(id, gunzip(packed).then((source) => { unpacked.set(id, source); return source; }));
    }
    return unpacking.get(id);
  }

  /** Run the library held in the element `id`, once; from a blob URL the browser compiles it off the main thread. */
  function run(id) {
    if (!running.has(id)) {
      running.set(id, unpack(id).then((source) => new Promise((resolve, reject) => {
        const url = URL.createObjectURL(new Blob([source], { type: "text/javascript" }));
        const script = document.createElement("script");
        script.src = url;
        script.onload = () => { URL.revokeObjectURL(url); ran.add(id); resolve(); };
        script.onerror = () => reject(new Error(`${id} did not run`));
        document.head.appendChild(script);
      })));
    }
    return running.get(id);
  }

  /** Run the library at once, as printing cannot wait; where it is not unpacked yet, it cannot. */
  function runNow(id) {
    if (ran.has(id) || running.has(id) || !unpacked.has(id)) return;
    const script = document.createElement("script");
    script.text = unpacked.get(id); // an inline script runs as soon as it is inserted
    document.head.appendChild(script);
    ran.add(id);
    running.set(id, Promise.resolve());
  }

  const libraryOf = (el) => (el.dataset.lazyFigure === "circuitsvis" ? "circuitsvis-js" : "plotly-js");

  function drawNow(el) {
    if (el.dataset.drawn) return;
    el.dataset.drawn = "true";
    const spec = JSON.parse(document.querySelector(`script[data-figure-of="${el.id}"]`).textContent);
    if (el.dataset.lazyFigure === "circuitsvis") {
      window.CircuitsVis.render(el.id, window.CircuitsVis.AttentionHeads, spec);
    } else {
      window.Plotly.newPlot(el, spec.data, spec.layout, JSON.parse(el.dataset.config));
    }
  }

  /** Draw `el`: at once where its library has run, else once it has. */
  function draw(el) {
    const id = libraryOf(el);
    if (ran.has(id)) return Promise.resolve(drawNow(el));
    return run(id).then(() => drawNow(el), (e) => console.error(`bracketlens: ${e}`));
  }

  // Figures that came into view, drawn one per task so the first shows before the rest are built.
  const queue = [];
  let pumping = false;
  const inView = (el) => {
    const r = el.getBoundingClientRect();
    return r.bottom > 0 && r.top < window.innerHeight;
  };

  function pump() {
    if (queue.length === 0) { pumping = false; return; }
    const next = queue.findIndex(inView);
    const [el] = queue.splice(next < 0 ? 0 : next, 1);
    draw(el)
      .catch((e) => console.error(`bracketlens: ${el.id}: ${e}`))
      .then(() => setTimeout(pump, 0));
  }

  function enqueue(el) {
    queue.push(el);
    if (!pumping) { pumping = true; pump(); }
  }

  const figures = () => [...document.querySelectorAll("[data-lazy-figure]")];
  const libraries = () => [...new Set(figures().map(libraryOf))];

  /** Draw every figure not drawn yet (at once where the libraries are unpacked); resolves once all are. */
  function drawAll() {
    libraries().forEach(runNow);
    return Promise.all(figures().map(draw));
  }

  function start() {
    const observer = new IntersectionObserver((entries) => {
      for (const entry of entries) {
        if (!entry.isIntersecting) continue;
        observer.unobserve(entry.target);
        enqueue(entry.target);
      }
    }, { rootMargin: AHEAD });
    figures().forEach((el) => observer.observe(el));
    libraries().forEach(unpack);
    const idle = window.requestIdleCallback || ((f) => setTimeout(f, 0));
    if (libraries().includes("plotly-js")) {
      setTimeout(() => idle(() => run("plotly-js"), { timeout: QUIET_MS }), QUIET_MS);
    }
  }

  const afterFirstPaint = () => requestAnimationFrame(() => setTimeout(start, 0));
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", afterFirstPaint);
  } else {
    afterFirstPaint();
  }
  window.addEventListener("beforeprint", drawAll);
  window.matchMedia("print").addEventListener("change", (e) => { if (e.matches) drawAll(); });
  window.bracketlensFigures = { drawAll };
})();
