// bracketlens explorer: the bracket classifier's forward pass in float64, and its views.
//
// One plain ES module, no dependencies, no build step. The report inlines it in
// a module script element; the notebook widget (anywidget) loads it as its module.
// Python (bracketlens.explorer.export) supplies the payload: the weights and the
// per-position mean outputs as base64 float32, the config and the localised roles.
//
// Conventions (those of bracketlens.model.transformer): tokens [start]=0 [pad]=1
// [end]=2 (=3 )=4; LayerNorm with biased variance and eps, then the affine map;
// bidirectional attention, pad keys scored -1e5 (pad queries are not masked);
// ReLU MLPs; the class read at position 0 as (unbalanced, balanced).
// Components are keyed "L.H" (a head) and "mlpL" (an MLP); an intervention
// replaces a head's hook_result or an MLP's hook_mlp_out, as Python's do.

const START = 0, PAD = 1, END = 2, OPEN = 3, CLOSE = 4;
export const MAX_PARENS = 40;
const MASKED = -1e5;

// ---------------------------------------------------------------- the model

function decodeTensor(enc) {
  const bin = atob(enc.data);
  const bytes = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
  const f32 = new Float32Array(bytes.buffer);
  return Float64Array.from(f32);
}

/** Decode the payload into float64 arrays, row-major as in the state dict. */
export function loadModel(payload) {
  const cfg = payload.config;
  const { n_heads: nh, d_model: dm, d_head: dh, d_mlp: dmlp } = cfg;
  const w = (name) => {
    const enc = payload.weights[name];
    if (!enc) throw new Error(`the payload has no weight ${name}`);
    return decodeTensor(enc);
  };
  const blocks = [];
  for (let l = 0; l < cfg.n_layers; l++) {
    const p = `blocks.${l}.`;
    blocks.push({
      ln1w: w(p + "ln1.w"), ln1b: w(p + "ln1.b"), ln2w: w(p + "ln2.w"), ln2b: w(p + "ln2.b"),
      WQ: w(p + "attn.W_Q"), WK: w(p + "attn.W_K"), WV: w(p + "attn.W_V"), WO: w(p + "attn.W_O"),
      bQ: w(p + "attn.b_Q"), bK: w(p + "attn.b_K"), bV: w(p + "attn.b_V"), bO: w(p + "attn.b_O"),
      Win: w(p + "mlp.W_in"), bin: w(p + "mlp.b_in"), Wout: w(p + "mlp.W_out"),
      bout: w(p + "mlp.b_out"),
    });
    const b = blocks[l];
    Object.assign(b, {
      WQt: transposeLast(b.WQ, nh, dm, dh), WKt: transposeLast(b.WK, nh, dm, dh),
      WVt: transposeLast(b.WV, nh, dm, dh), WOt: transposeLast(b.WO, nh, dh, dm),
      Wint: transposeLast(b.Win, 1, dm, dmlp), Woutt: transposeLast(b.Wout, 1, dmlp, dm),
    });
  }
  const means = {};
  for (const [name, enc] of Object.entries(payload.means || {})) means[name] = decodeTensor(enc);
  return {
    cfg, blocks, means, roles: payload.roles || {}, meansFrom: payload.means_from || "",
    WE: w("embed.W_E"), Wpos: w("pos_embed.W_pos"), lnfw: w("ln_final.w"), lnfb: w("ln_final.b"),
    WU: w("unembed.W_U"), bU: w("unembed.b_U"),
  };
}

/** Why a string cannot be read by the model, or null when it can. */
export function validate(s) {
  if (typeof s !== "string") return "expected a string of parens";
  for (let i = 0; i < s.length; i++) {
    const c = s[i];
    if (c !== "(" && c !== ")") {
      return `'${c}' at position ${i}: only '(' and ')' are allowed`;
    }
  }
  if (s.length > MAX_PARENS) {
    return `${s.length} parens: the model reads at most ${MAX_PARENS}; shorten the string`;
  }
  return null;
}

/** [start] parens [end], then [pad] up to `width` tokens. */
export function tokenize(s, width = s.length + 2) {
  const t = new Int32Array(width).fill(PAD);
  t[0] = START;
  for (let i = 0; i < s.length; i++) t[i + 1] = s[i] === "(" ? OPEN : CLOSE;
  t[s.length + 1] = END;
  return t;
}

function layerNorm(x, n, d, w, b, eps, out, scales) {
  for (let p = 0; p < n; p++) {
    const o = p * d;
    let mean = 0;
    for (let i = 0; i < d; i++) mean += x[o + i];
    mean /= d;
    let v = 0;
    for (let i = 0; i < d; i++) { const c = x[o + i] - mean; v += c * c; }
    const s = Math.sqrt(v / d + eps);
    if (scales) scales[p] = s;
    for (let i = 0; i < d; i++) out[o + i] = ((x[o + i] - mean) / s) * w[i] + b[i];
  }
}

// [heads, d_in, d_out] -> [heads, d_out, d_in], so that every product below is a
// dot product over contiguous memory accumulated in a local (about twice as fast)
function transposeLast(W, nh, din, dout) {
  const T = new Float64Array(W.length);
  for (let h = 0; h < nh; h++) {
    for (let m = 0; m < din; m++) {
      for (let e = 0; e < dout; e++) T[(h * dout + e) * din + m] = W[(h * din + m) * dout + e];
    }
  }
  return T;
}

// out[p, h, e] = b[h, e] + sum_m x[p, m] W[h, m, e], with Wt = W transposed to [h, e, m]
function project(x, n, nh, din, dout, Wt, b, out) {
  for (let p = 0; p < n; p++) {
    const xo = p * din;
    for (let h = 0; h < nh; h++) {
      const o = (p * nh + h) * dout;
      for (let e = 0; e < dout; e++) {
        const wo = (h * dout + e) * din;
        let acc = b ? b[h * dout + e] : 0;
        for (let m = 0; m < din; m++) acc += x[xo + m] * Wt[wo + m];
        out[o + e] = acc;
      }
    }
  }
}

/** Values written over a component's output at the positions it covers, in order. */
function applyInterventions(list, key, out, n, head, nh, dm, model, layer) {
  for (const iv of list) {
    if (iv.key !== key) continue;
    const positions = iv.positions == null ? [...Array(n).keys()] : iv.positions;
    for (const p of positions) {
      if (p < 0 || p >= n) continue;
      const o = head == null ? p * dm : (p * nh + head) * dm;
      let src = null, so = 0;
      if (iv.kind === "mean") {
        const name = head == null ? `blocks.${layer}.hook_mlp_out` : `blocks.${layer}.attn.hook_result`;
        src = model.means[name];
        if (!src) throw new Error(`the payload has no mean for ${name}`);
        so = o;
      } else if (iv.kind === "run") {
        const L = iv.run.layers[layer];
        src = head == null ? L.mlpOut : L.result;
        so = o;
      }
      for (let i = 0; i < dm; i++) out[o + i] = src ? src[so + i] : 0;
    }
  }
}

// Keys and values at all n positions, queries (and all that follows) at the first nq.
function attentionLayer(model, blk, xn, tokens, n, nq, l, interventions, out) {
  const { n_heads: nh, d_model: dm, d_head: dh } = model.cfg;
  const q = new Float64Array(nq * nh * dh), k = new Float64Array(n * nh * dh);
  const v = new Float64Array(n * nh * dh);
  project(xn, nq, nh, dm, dh, blk.WQt, blk.bQ, q);
  project(xn, n, nh, dm, dh, blk.WKt, blk.bK, k);
  project(xn, n, nh, dm, dh, blk.WVt, blk.bV, v);
  const scale = Math.sqrt(dh);
  const pattern = new Float64Array(nh * nq * n);
  const z = new Float64Array(nq * nh * dh);
  for (let h = 0; h < nh; h++) {
    for (let qi = 0; qi < nq; qi++) {
      const row = (h * nq + qi) * n;
      let max = -Infinity;
      for (let ki = 0; ki < n; ki++) {
        let s = MASKED;
        if (tokens[ki] !== PAD) {
          s = 0;
          const qo = (qi * nh + h) * dh, ko = (ki * nh + h) * dh;
          for (let d = 0; d < dh; d++) s += q[qo + d] * k[ko + d];
          s /= scale;
        }
        pattern[row + ki] = s;
        if (s > max) max = s;
      }
      let sum = 0;
      for (let ki = 0; ki < n; ki++) {
        const e = Math.exp(pattern[row + ki] - max);
        pattern[row + ki] = e;
        sum += e;
      }
      const zo = (qi * nh + h) * dh;
      for (let ki = 0; ki < n; ki++) {
        const a = (pattern[row + ki] /= sum);
        if (a === 0) continue;
        const vo = (ki * nh + h) * dh;
        for (let d = 0; d < dh; d++) z[zo + d] += a * v[vo + d];
      }
    }
  }
  // each head's output (hook_result), then the interventions on it
  const result = new Float64Array(nq * nh * dm);
  for (let p = 0; p < nq; p++) {
    for (let h = 0; h < nh; h++) {
      // this head's z at p, times W_O[h]: one "project" with a single head
      const zo = (p * nh + h) * dh, ro = (p * nh + h) * dm;
      for (let m = 0; m < dm; m++) {
        const wo = (h * dm + m) * dh;
        let acc = 0;
        for (let d = 0; d < dh; d++) acc += z[zo + d] * blk.WOt[wo + d];
        result[ro + m] = acc;
      }
    }
  }
  for (let h = 0; h < nh; h++) {
    applyInterventions(interventions, `${l}.${h}`, result, nq, h, nh, dm, model, l);
  }
  for (let p = 0; p < nq; p++) {
    for (let m = 0; m < dm; m++) {
      let s = blk.bO[m];
      for (let h = 0; h < nh; h++) s += result[(p * nh + h) * dm + m];
      out[p * dm + m] = s;
    }
  }
  return { pattern, z, result };
}

function mlpLayer(model, blk, xn, n, l, interventions, out) {
  const { d_model: dm, d_mlp: dmlp } = model.cfg;
  const post = new Float64Array(n * dmlp);
  project(xn, n, 1, dm, dmlp, blk.Wint, blk.bin, post);
  for (let i = 0; i < post.length; i++) if (post[i] < 0) post[i] = 0;
  project(post, n, 1, dmlp, dm, blk.Woutt, blk.bout, out);
  applyInterventions(interventions, `mlp${l}`, out, n, null, 1, dm, model, l);
  return post;
}

/**
 * Run the model on `tokens` (Int32Array). `interventions`: a list of
 * {key: "L.H" | "mlpL", positions: null | number[], kind: "zero" | "mean" | "run", run}.
 * Returns every activation the views need, float64, without a batch axis.
 */
export function forward(model, tokens, interventions = [], { logitsOnly = false, resume = null } = {}) {
  const { d_model: dm, n_layers: nl, eps } = model.cfg;
  const n = tokens.length;
  // for the logits alone, the last layer needs keys and values everywhere but
  // a query, an MLP and the final LayerNorm at position 0 only
  const nqLast = logitsOnly ? 1 : n;
  let resid = new Float64Array(n * dm);
  for (let p = 0; p < n; p++) {
    for (let m = 0; m < dm; m++) resid[p * dm + m] = model.WE[tokens[p] * dm + m] + model.Wpos[p * dm + m];
  }
  const embed = resid.slice();
  const layers = [];
  // resume = {run, layer}: the layers before `layer` are those of `run` (same tokens,
  // no intervention that differs there), so they are taken, not recomputed
  const start = resume ? resume.layer : 0;
  for (let l = 0; l < start; l++) layers.push(resume.run.layers[l]);
  if (start > 0) resid = resume.run.layers[start - 1].residPost;
  const xn = new Float64Array(n * dm);
  for (let l = start; l < nl; l++) {
    const blk = model.blocks[l];
    const nq = l === nl - 1 ? nqLast : n;
    layerNorm(resid, n, dm, blk.ln1w, blk.ln1b, eps, xn, null);
    const attnOut = new Float64Array(nq * dm);
    const attn = attentionLayer(model, blk, xn, tokens, n, nq, l, interventions, attnOut);
    const mid = new Float64Array(nq * dm);
    for (let i = 0; i < mid.length; i++) mid[i] = resid[i] + attnOut[i];
    layerNorm(mid, nq, dm, blk.ln2w, blk.ln2b, eps, xn, null);
    const mlpOut = new Float64Array(nq * dm);
    const post = mlpLayer(model, blk, xn, nq, l, interventions, mlpOut);
    const residPost = new Float64Array(nq * dm);
    for (let i = 0; i < residPost.length; i++) residPost[i] = mid[i] + mlpOut[i];
    layers.push({ ...attn, attnOut, post, mlpOut, residPost });
    resid = residPost;
  }
  const lnfScale = new Float64Array(nqLast);
  const xf = new Float64Array(nqLast * dm);
  layerNorm(resid, nqLast, dm, model.lnfw, model.lnfb, eps, xf, lnfScale);
  const logits = [0, 1].map((c) => {
    let s = model.bU[c];
    for (let m = 0; m < dm; m++) s += xf[m] * model.WU[m * 2 + c];
    return s;
  });
  return { n, tokens, embed, layers, lnfScale, logits };
}

export function sigmoid(x) {
  return x >= 0 ? 1 / (1 + Math.exp(-x)) : Math.exp(x) / (1 + Math.exp(x));
}

/** P(balanced) from the two logits (a softmax over two classes). */
export function pBalanced(logits) {
  return sigmoid(logits[1] - logits[0]);
}

// -------------------------------------------------- ground truth (as data/truth.py)

const GROUPS = ["both failures", "just neg failure", "just total elevation failure", "balanced"];

export function isBalanced(s) {
  let depth = 0;
  for (const c of s) {
    depth += c === "(" ? 1 : -1;
    if (depth < 0) return false;
  }
  return depth === 0;
}

/** The failure group, read right to left as the course model does. */
export function failureGroup(s) {
  let elevation = 0, negative = false;
  for (let i = s.length - 1; i >= 0; i--) {
    elevation += s[i] === "(" ? 1 : -1;
    if (elevation > 0) negative = true;
  }
  const total = elevation !== 0;
  if (total && negative) return GROUPS[0];
  if (negative) return GROUPS[1];
  if (total) return GROUPS[2];
  return GROUPS[3];
}

// ------------------------------------------------------------- derived views

/** Component keys in forward order: "0.0", "0.1", "mlp0", "1.0", ... */
export function componentKeys(cfg) {
  const keys = [];
  for (let l = 0; l < cfg.n_layers; l++) {
    for (let h = 0; h < cfg.n_heads; h++) keys.push(`${l}.${h}`);
    keys.push(`mlp${l}`);
  }
  return keys;
}

export function componentLabel(key) {
  return key.startsWith("mlp") ? `mlp ${key.slice(3)}` : `head ${key}`;
}

/**
 * Each component's exact contribution to logit(balanced) - logit(unbalanced) at
 * position 0, through the final LayerNorm with this run's own scale frozen:
 * (c - mean(c)) / scale . (w * (W_U[:, 1] - W_U[:, 0])). The rows plus `bias`
 * (b_O of every layer, the LayerNorm's b and b_U) sum to the logit difference.
 */
export function attribution(model, run) {
  const { d_model: dm, n_heads: nh, n_layers: nl } = model.cfg;
  const s = run.lnfScale[0];
  const g = new Float64Array(dm);
  let gsum = 0;
  for (let m = 0; m < dm; m++) {
    g[m] = model.lnfw[m] * (model.WU[m * 2 + 1] - model.WU[m * 2]);
    gsum += g[m];
  }
  const along = (vec, o) => {
    let dot = 0, mean = 0;
    for (let m = 0; m < dm; m++) { dot += vec[o + m] * g[m]; mean += vec[o + m]; }
    return (dot - (mean / dm) * gsum) / s;
  };
  const tok = run.tokens[0];
  const rows = [
    { key: "embed", label: "embed", value: along(model.WE, tok * dm) },
    { key: "pos", label: "pos embed", value: along(model.Wpos, 0) },
  ];
  let bias = 0;
  for (let l = 0; l < nl; l++) {
    const L = run.layers[l];
    for (let h = 0; h < nh; h++) {
      rows.push({ key: `${l}.${h}`, label: `head ${l}.${h}`, value: along(L.result, h * dm) });
    }
    rows.push({ key: `mlp${l}`, label: `mlp ${l}`, value: along(L.mlpOut, 0) });
    bias += along(model.blocks[l].bO, 0);
  }
  let lnBias = model.bU[1] - model.bU[0];
  for (let m = 0; m < dm; m++) lnBias += model.lnfb[m] * (model.WU[m * 2 + 1] - model.WU[m * 2]);
  return { rows, bias: bias + lnBias, total: run.logits[1] - run.logits[0] };
}

/** The `k` most active neurons at `position` in the MLPs before the elevation layer. */
export function topNeurons(model, run, position, k = 10) {
  const { d_mlp: dmlp, n_layers: nl } = model.cfg;
  const elev = (model.roles.elevation || [nl, 0])[0];
  const upto = elev > 0 ? Math.min(elev, nl) : nl;
  if (position >= run.n) return [];
  const all = [];
  for (let l = 0; l < upto; l++) {
    const post = run.layers[l].post;
    for (let j = 0; j < dmlp; j++) all.push({ name: `${l}.${j}`, value: post[position * dmlp + j] });
  }
  all.sort((a, b) => b.value - a.value);
  return all.slice(0, k);
}

/** Elevation after each paren, read left to right (0 before the first). */
export function runningElevation(s) {
  const out = [0];
  let e = 0;
  for (const c of s) { e += c === "(" ? 1 : -1; out.push(e); }
  return out;
}

// --------------------------------------------------- the test-friendly API

function nested(arr, shape) {
  if (shape.length === 1) return Array.from(arr.subarray(0, shape[0]));
  const size = shape.slice(1).reduce((a, b) => a * b, 1);
  const out = [];
  for (let i = 0; i < shape[0]; i++) out.push(nested(arr.subarray(i * size, (i + 1) * size), shape.slice(1)));
  return out;
}

/** The first layer an intervention list touches (n_layers when it touches none). */
export function firstLayer(interventions, nLayers) {
  let first = nLayers;
  for (const iv of interventions) {
    const l = Number(iv.key.startsWith("mlp") ? iv.key.slice(3) : iv.key.split(".")[0]);
    if (Number.isInteger(l) && l >= 0) first = Math.min(first, l);
  }
  return first;
}

/** Intervention list from {ablate: {"2.0": "mean", "mlp1": "zero"}}. */
export function ablationList(ablate) {
  return Object.entries(ablate || {})
    .filter(([, mode]) => mode === "zero" || mode === "mean")
    .map(([key, kind]) => ({ key, positions: null, kind }));
}

/** Bind the synchronous API to one decoded model. */
export function makeApi(model) {
  const { n_layers: nl, n_heads: nh, d_head: dh, d_mlp: dmlp, d_model: dm } = model.cfg;
  return {
    /** P(balanced) of each string (NaN for an invalid one); options {ablate}. */
    predict(strings, options = {}) {
      const ivs = ablationList(options.ablate);
      const only = { logitsOnly: true };
      return Array.from(strings, (s) => (validate(s) ? NaN : pBalanced(forward(model, tokenize(s), ivs, only).logits)));
    },
    /** Position-0 logits (unbalanced, balanced) of each string (null for an invalid one). */
    logits(strings, options = {}) {
      const ivs = ablationList(options.ablate);
      const only = { logitsOnly: true };
      return Array.from(strings, (s) => (validate(s) ? null : forward(model, tokenize(s), ivs, only).logits));
    },
    /** Activations keyed by TransformerLens hook names, without the batch axis. */
    trace(s, options = {}) {
      const err = validate(s);
      if (err) throw new Error(err);
      const run = forward(model, tokenize(s), ablationList(options.ablate));
      const n = run.n;
      const out = { tokens: Array.from(run.tokens) };
      for (let l = 0; l < nl; l++) {
        const L = run.layers[l];
        out[`blocks.${l}.attn.hook_pattern`] = nested(L.pattern, [nh, n, n]);
        out[`blocks.${l}.attn.hook_z`] = nested(L.z, [n, nh, dh]);
        out[`blocks.${l}.mlp.hook_post`] = nested(L.post, [n, dmlp]);
        out[`blocks.${l}.hook_resid_post`] = nested(L.residPost, [n, dm]);
      }
      out["ln_final.hook_scale"] = Array.from(run.lnfScale, (x) => [x]);
      out.logits = run.logits.slice();
      return out;
    },
  };
}

// ------------------------------------------------------------------ the views

const CSS = `
.bl-explorer { font: 14px system-ui, -apple-system, "Segoe UI", sans-serif; color: #1d2433; }
.bl-explorer .bl-inputs { display: flex; gap: 18px; flex-wrap: wrap; align-items: end; }
.bl-explorer label { display: flex; flex-direction: column; font-size: 12px; color: #4a5568; }
.bl-explorer input[type=text] { font: 16px ui-monospace, Menlo, monospace; width: 30em;
  padding: 4px 6px; border: 1px solid #c5ced9; border-radius: 4px; }
.bl-explorer .bl-error { color: #b42318; min-height: 1.4em; margin: 4px 0; }
.bl-explorer .bl-summary span { margin-right: 18px; }
.bl-explorer .bl-summary b { font-family: ui-monospace, Menlo, monospace; }
.bl-explorer .bl-grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(520px, 1fr));
  gap: 12px; margin-top: 8px; }
.bl-explorer .bl-panel { background: white; border: 1px solid #e3e8ee; border-radius: 8px;
  padding: 8px 10px; }
.bl-explorer .bl-panel h4 { margin: 0 0 4px 0; font-size: 13px; }
.bl-explorer .bl-note { font-size: 12px; color: #4a5568; margin: 2px 0; }
.bl-explorer .bl-heads { display: flex; flex-wrap: wrap; gap: 6px; }
.bl-explorer button.bl-comp { font: 12px ui-monospace, Menlo, monospace; margin: 2px;
  border: 1px solid #c5ced9; background: #f6f8fa; border-radius: 4px; padding: 2px 6px; cursor: pointer; }
.bl-explorer button.bl-comp.zero { background: #fde2e1; border-color: #e73f74; }
.bl-explorer button.bl-comp.mean { background: #fff1d6; border-color: #e68310; }
.bl-explorer canvas { display: block; }
`;

const COLORS = { elevation: "#e68310", negative: "#7f3c8d", pos: "#3969ac", neg: "#e73f74", grid: "#dde3ea" };

function injectStyle(doc) {
  if (doc.getElementById("bl-explorer-style")) return;
  const style = doc.createElement("style");
  style.id = "bl-explorer-style";
  style.textContent = CSS;
  doc.head.appendChild(style);
}

function canvas(width, height) {
  const c = document.createElement("canvas");
  const ratio = window.devicePixelRatio || 1;
  c.width = Math.round(width * ratio);
  c.height = Math.round(height * ratio);
  c.style.width = `${width}px`;
  c.style.height = `${height}px`;
  c.getContext("2d").setTransform(ratio, 0, 0, ratio, 0, 0);
  return c;
}

function clear(c) {
  const ctx = c.getContext("2d");
  ctx.clearRect(0, 0, c.width, c.height);
  ctx.font = "11px system-ui, sans-serif";
  return ctx;
}

function roleOf(model, key) {
  const r = model.roles;
  if (r.elevation && key === `${r.elevation[0]}.${r.elevation[1]}`) return "elevation";
  if (r.negative && key === `${r.negative[0]}.${r.negative[1]}`) return "negative";
  return null;
}

function drawElevation(c, s) {
  const ctx = clear(c);
  const W = parseFloat(c.style.width), H = parseFloat(c.style.height);
  const elev = runningElevation(s);
  const lo = Math.min(0, ...elev), hi = Math.max(1, ...elev);
  const x = (i) => 30 + (i * (W - 40)) / MAX_PARENS;
  const y = (v) => 10 + ((hi - v) * (H - 30)) / (hi - lo || 1);
  ctx.strokeStyle = COLORS.grid;
  ctx.beginPath(); ctx.moveTo(x(0), y(0)); ctx.lineTo(x(MAX_PARENS), y(0)); ctx.stroke();
  ctx.fillStyle = "#4a5568";
  ctx.fillText(String(hi), 4, y(hi) + 4); ctx.fillText("0", 4, y(0) + 4);
  if (lo < 0) ctx.fillText(String(lo), 4, y(lo) + 4);
  ctx.fillText("position", W - 50, H - 4);
  ctx.strokeStyle = COLORS.pos; ctx.lineWidth = 2;
  ctx.beginPath();
  elev.forEach((v, i) => (i ? ctx.lineTo(x(i), y(v)) : ctx.moveTo(x(i), y(v))));
  ctx.stroke(); ctx.lineWidth = 1;
  elev.forEach((v, i) => {
    ctx.fillStyle = v < 0 ? COLORS.neg : COLORS.pos;
    ctx.fillRect(x(i) - 2, y(v) - 2, 4, 4);
  });
}

function drawBars(c, rows, { highlight = () => null, ablated = () => null, fmt = (v) => v.toFixed(3) }) {
  const ctx = clear(c);
  const W = parseFloat(c.style.width);
  const rowH = 16, left = 86, right = 60;
  const max = Math.max(1e-9, ...rows.map((r) => Math.abs(r.value)));
  const zeroX = left + (W - left - right) / 2;
  const scale = (W - left - right) / 2 / max;
  ctx.strokeStyle = COLORS.grid;
  ctx.beginPath(); ctx.moveTo(zeroX, 0); ctx.lineTo(zeroX, rows.length * rowH); ctx.stroke();
  rows.forEach((r, i) => {
    const y = i * rowH;
    const role = highlight(r.key);
    const mode = ablated(r.key);
    if (role) { ctx.fillStyle = role === "elevation" ? "#fff1d6" : "#efe3f5"; ctx.fillRect(0, y, W, rowH); }
    ctx.fillStyle = role ? COLORS[role] : "#1d2433";
    ctx.fillText(r.label + (mode ? ` (${mode})` : ""), 2, y + 12);
    ctx.fillStyle = r.value >= 0 ? COLORS.pos : COLORS.neg;
    const w = r.value * scale;
    ctx.fillRect(w >= 0 ? zeroX : zeroX + w, y + 3, Math.abs(w), rowH - 6);
    ctx.fillStyle = "#1d2433";
    ctx.fillText(fmt(r.value), W - right + 4, y + 12);
  });
}

function drawAttention(c, run, l, h, hover, scratch) {
  const ctx = clear(c);
  const size = parseFloat(c.style.width) - 20;
  const n = run.n, cell = size / n;
  const P = run.layers[l].pattern;
  // one pixel per cell, then scaled up: far cheaper than n * n fillRect calls
  scratch.width = n; scratch.height = n;
  const sctx = scratch.getContext("2d");
  const img = sctx.createImageData(n, n);
  for (let i = 0; i < n * n; i++) {
    const a = P[h * n * n + i];
    img.data[4 * i] = Math.round(255 * (1 - a));
    img.data[4 * i + 1] = Math.round(255 - 150 * a);
    img.data[4 * i + 2] = 255;
    img.data[4 * i + 3] = 255;
  }
  sctx.putImageData(img, 0, 0);
  ctx.imageSmoothingEnabled = false;
  ctx.drawImage(scratch, 20, 20, size, size);
  ctx.fillStyle = "#4a5568";
  ctx.fillText("keys \u2192", 22, 12);
  ctx.save(); ctx.translate(10, 24); ctx.rotate(Math.PI / 2); ctx.fillText("queries \u2192", 0, 0); ctx.restore();
  if (hover != null && hover < n) {
    ctx.lineWidth = 2;
    ctx.strokeStyle = COLORS.elevation;
    ctx.strokeRect(20, 20 + hover * cell, size, cell); // the positions it attends to
    ctx.strokeStyle = COLORS.negative;
    ctx.strokeRect(20 + hover * cell, 20, cell, size); // the positions attending to it
    ctx.lineWidth = 1;
  }
}

function tokenLabels(s) {
  return ["S", ...s, "E"];
}

function drawTokens(c, s, hover) {
  const ctx = clear(c);
  const labels = tokenLabels(s);
  const W = parseFloat(c.style.width), cell = W / (MAX_PARENS + 2);
  ctx.font = "13px ui-monospace, Menlo, monospace";
  labels.forEach((t, i) => {
    if (i === hover) { ctx.fillStyle = "#fff1d6"; ctx.fillRect(i * cell, 0, cell, 20); }
    ctx.fillStyle = "#1d2433";
    ctx.fillText(t, i * cell + cell / 2 - 4, 15);
  });
}

// ------------------------------------------------------------ URL fragment
//
// #s=<first string>&t=<second string>&ablate=<key>:<zero|mean>,...&patch=<key>@<position|all>
// with keys "L.H" for a head and "mlpL" for an MLP, e.g. #s=(())&ablate=2.0:mean&t=()()&patch=mlp1@1

export function parseFragment(hash) {
  const state = { a: "", b: "", ablate: {}, patch: null };
  const text = (hash || "").replace(/^#/, "");
  for (const part of text.split("&")) {
    const eq = part.indexOf("=");
    if (eq < 0) continue;
    const key = part.slice(0, eq);
    let value;
    try { value = decodeURIComponent(part.slice(eq + 1)); } catch { value = part.slice(eq + 1); }
    if (key === "s") state.a = value;
    else if (key === "t") state.b = value;
    else if (key === "ablate") {
      for (const item of value.split(",")) {
        const [comp, mode] = item.split(":");
        if (comp && (mode === "zero" || mode === "mean")) state.ablate[comp] = mode;
      }
    } else if (key === "patch") {
      const [comp, where] = value.split("@");
      const all = where == null || where === "all";
      if (comp && (all || /^\d+$/.test(where))) state.patch = { key: comp, position: all ? null : Number(where) };
    }
  }
  return state;
}

export function formatFragment(state) {
  const enc = (s) => encodeURIComponent(s).replace(/%28/g, "(").replace(/%29/g, ")");
  const parts = [`s=${enc(state.a)}`];
  if (state.b) parts.push(`t=${enc(state.b)}`);
  const ab = Object.entries(state.ablate).map(([k, m]) => `${k}:${m}`);
  if (ab.length) parts.push(`ablate=${ab.join(",")}`);
  if (state.patch) parts.push(`patch=${state.patch.key}@${state.patch.position == null ? "all" : state.patch.position}`);
  return "#" + parts.join("&");
}

// --------------------------------------------------------------- the explorer

const ROLES = ["input", "input-b", "error", "prob", "logit-diff", "label", "group",
  "ablation-delta", "ablate-mode", "patch-component", "patch-position", "patch-delta"];

function html(model) {
  const cfg = model.cfg;
  const keys = componentKeys(cfg);
  const opts = keys.map((k) => `<option value="${k}">${componentLabel(k)}</option>`).join("");
  const heads = [];
  for (let l = 0; l < cfg.n_layers; l++) {
    for (let h = 0; h < cfg.n_heads; h++) {
      const role = roleOf(model, `${l}.${h}`);
      const tag = role ? ` <span style="color:${COLORS[role]}">(${role} head)</span>` : "";
      heads.push(`<div><div class="bl-note">head ${l}.${h}${tag}</div><canvas data-head="${l}.${h}"></canvas></div>`);
    }
  }
  const buttons = keys.map((k) => `<button type="button" class="bl-comp" data-component="${k}">${componentLabel(k)}</button>`).join("");
  const r = model.roles;
  const roleText = r.elevation
    ? `Elevation head ${r.elevation.join(".")} (reads position ${r.read_position})` +
      (r.negative ? `, negative head ${r.negative.join(".")}` : ", no negative head found")
    : "";
  return `
<div class="bl-inputs">
  <label>string (0 to ${MAX_PARENS} parens)<input type="text" data-role="input" spellcheck="false" autocomplete="off"></label>
  <label>compare with (patch source)<input type="text" data-role="input-b" spellcheck="false" autocomplete="off"></label>
</div>
<div class="bl-error" data-role="error" role="alert"></div>
<div class="bl-summary">
  <span>P(balanced) <b data-role="prob"></b></span>
  <span>logit(bal) &minus; logit(unbal) <b data-role="logit-diff"></b></span>
  <span>true label <b data-role="label"></b></span>
  <span>failure group <b data-role="group"></b></span>
  <span data-role="ablation-delta"></span>
</div>
<div class="bl-grid">
  <div class="bl-panel"><h4>Running elevation</h4>
    <div class="bl-note">#( &minus; #) after each paren, left to right; red where it goes below zero.</div>
    <canvas data-view="elevation"></canvas></div>
  <div class="bl-panel"><h4>Attribution to the logit difference at position 0</h4>
    <div class="bl-note">Each component through the final LayerNorm with this string's scale frozen;
    the bars and the bias sum to the logit difference. ${roleText}. Click a bar to ablate.</div>
    <canvas data-view="attribution"></canvas><div class="bl-note" data-view="attribution-sum"></div></div>
  <div class="bl-panel"><h4>Attention</h4>
    <div class="bl-note">Hover a token or a row: the orange row is what it attends to, the purple column what attends to it.</div>
    <canvas data-view="tokens"></canvas><div class="bl-heads" data-view="heads" style="display:grid;grid-template-columns:repeat(${cfg.n_heads},160px)">${heads.join("")}</div></div>
  <div class="bl-panel"><h4>Neurons at the elevation head's read position</h4>
    <div class="bl-note" data-view="neurons-note"></div><canvas data-view="neurons"></canvas></div>
  <div class="bl-panel"><h4>Ablate</h4>
    <div class="bl-note">Click a component to ablate it (again to restore).
      <select data-role="ablate-mode"><option value="mean">mean ablation</option><option value="zero">zero ablation</option></select>
      Means over ${model.meansFrom || "the report's data"}.</div>
    <div>${buttons}</div>
    <h4 style="margin-top:10px">Patch from the second string</h4>
    <div class="bl-note">
      <select data-role="patch-component"><option value="">no patch</option>${opts}</select>
      at <select data-role="patch-position"><option value="all">every position</option></select>
      <span data-role="patch-delta"></span></div></div>
</div>`;
}

/**
 * Build the explorer inside `el`. Options: string, compare (initial strings),
 * ids (give the elements the fixed ids explore-*), url (keep the state in the URL
 * fragment), onState (called with the state after each update).
 */
export function mount(el, payload, options = {}) {
  const model = options.model || loadModel(payload);
  injectStyle(el.ownerDocument);
  el.classList.add("bl-explorer");
  el.innerHTML = html(model);
  const q = (sel) => el.querySelector(sel);
  const node = Object.fromEntries(ROLES.map((r) => [r, q(`[data-role="${r}"]`)]));
  if (options.ids) for (const r of ROLES) node[r].id = `explore-${r}`;
  const views = {
    elevation: q('[data-view="elevation"]'), attribution: q('[data-view="attribution"]'),
    tokens: q('[data-view="tokens"]'), neurons: q('[data-view="neurons"]'),
  };
  const sized = (c, w, h) => { const n = canvas(w, h); for (const a of c.attributes) n.setAttribute(a.name, a.value); c.replaceWith(n); return n; };
  views.elevation = sized(views.elevation, 500, 150);
  const nRows = componentKeys(model.cfg).length + 2;
  views.attribution = sized(views.attribution, 500, 16 * (nRows + 1));
  views.tokens = sized(views.tokens, 500, 20);
  views.neurons = sized(views.neurons, 500, 16 * 10);
  const headCanvases = [...el.querySelectorAll("canvas[data-head]")].map((c) => sized(c, 160, 160));
  const scratch = document.createElement("canvas");

  const state = { a: options.string ?? "(())", b: options.compare ?? "", ablate: {}, patch: null };
  // the fragment is ours only once it holds a string: the report's own links use #section
  const ours = (hash) => /(^#|&)s=/.test(hash);
  let writeUrl = Boolean(options.url && ours(window.location.hash));
  if (writeUrl) Object.assign(state, parseFragment(window.location.hash));
  let hover = null, last = null, cachedB = { s: null, run: null }, urlTimer = null;

  function sourceRun(b) {
    if (cachedB.s !== b) cachedB = { s: b, run: forward(model, tokenize(b, model.cfg.n_ctx)) };
    return cachedB.run;
  }

  function drawHeads() {
    if (!last) return;
    drawTokens(views.tokens, last.s, hover);
    headCanvases.forEach((c) => {
      const [l, h] = c.dataset.head.split(".").map(Number);
      drawAttention(c, last.run, l, h, hover, scratch);
    });
    el.dataset.hover = hover == null ? "" : String(hover);
  }

  function patchText(ivs, run) {
    const p = state.patch;
    if (!p) return "";
    const bErr = validate(state.b);
    if (bErr) return `second string: ${bErr}`;
    if (p.position != null && p.position >= run.n) return `position ${p.position} is beyond the first string`;
    const patch = { key: p.key, positions: p.position == null ? null : [p.position], kind: "run", run: sourceRun(state.b) };
    const from = Math.min(firstLayer([patch], model.cfg.n_layers), model.cfg.n_layers - 1);
    const patched = forward(model, tokenize(state.a), [...ivs, patch], { logitsOnly: true, resume: { run, layer: from } });
    const before = run.logits[1] - run.logits[0], after = patched.logits[1] - patched.logits[0];
    const d = after - before;
    return `logit difference ${before.toFixed(4)} \u2192 ${after.toFixed(4)} (change ${d >= 0 ? "+" : ""}${d.toFixed(4)}), P(balanced) ${pBalanced(patched.logits).toFixed(6)}`;
  }

  function refreshControls(n) {
    for (const b of el.querySelectorAll("button.bl-comp")) {
      const mode = state.ablate[b.dataset.component];
      b.className = `bl-comp${mode ? " " + mode : ""}`;
      b.textContent = componentLabel(b.dataset.component) + (mode ? `: ${mode}` : "");
    }
    const sel = node["patch-position"];
    if (sel.options.length !== n + 1) {
      sel.innerHTML = `<option value="all">every position</option>` + [...Array(n).keys()].map((p) => `<option value="${p}">position ${p}</option>`).join("");
    }
    node["patch-component"].value = state.patch ? state.patch.key : "";
    sel.value = state.patch && state.patch.position != null ? String(state.patch.position) : "all";
  }

  function update() {
    if (node.input.value !== state.a) node.input.value = state.a;
    if (node["input-b"].value !== state.b) node["input-b"].value = state.b;
    if (writeUrl && urlTimer == null) {
      // at most a few writes a second: Chromium throttles frequent history updates
      urlTimer = setTimeout(() => {
        urlTimer = null;
        const frag = formatFragment(state);
        if (window.location.hash !== frag) history.replaceState(null, "", frag);
      }, 150);
    }
    const err = validate(state.a);
    if (err) {
      node.error.textContent = err;
      for (const r of ["prob", "logit-diff", "label", "group"]) node[r].textContent = "\u2014";
      options.onState?.({ ...state });
      return;
    }
    node.error.textContent = "";
    const s = state.a;
    const ivs = ablationList(state.ablate);
    const run = forward(model, tokenize(s), ivs);
    last = { s, run };
    const ld = run.logits[1] - run.logits[0];
    node.prob.textContent = pBalanced(run.logits).toFixed(6);
    node["logit-diff"].textContent = ld.toFixed(4);
    node.label.textContent = isBalanced(s) ? "balanced" : "unbalanced";
    node.group.textContent = failureGroup(s);
    if (ivs.length) {
      const from = Math.min(firstLayer(ivs, model.cfg.n_layers), model.cfg.n_layers - 1);
      const clean = forward(model, tokenize(s), [], { logitsOnly: true, resume: { run, layer: from } });
      const d = ld - (clean.logits[1] - clean.logits[0]);
      node["ablation-delta"].textContent = `ablated; clean P(balanced) ${pBalanced(clean.logits).toFixed(6)}, change in logit difference ${d >= 0 ? "+" : ""}${d.toFixed(4)}`;
    } else node["ablation-delta"].textContent = "";
    refreshControls(run.n);
    node["patch-delta"].textContent = patchText(ivs, run);
    drawElevation(views.elevation, s);
    const attr = attribution(model, run);
    drawBars(views.attribution, [...attr.rows, { key: "bias", label: "biases", value: attr.bias }], {
      highlight: (k) => roleOf(model, k), ablated: (k) => state.ablate[k],
    });
    q('[data-view="attribution-sum"]').textContent = `sum ${(attr.rows.reduce((t, r) => t + r.value, 0) + attr.bias).toFixed(4)} = logit difference ${attr.total.toFixed(4)}`;
    const pos = model.roles.read_position ?? 1;
    const top = topNeurons(model, run, pos);
    q('[data-view="neurons-note"]').textContent = top.length
      ? `ReLU activations (mlp.hook_post) at position ${pos}, the ${top.length} largest, named layer.neuron.`
      : `The string is too short to reach position ${pos}.`;
    drawBars(views.neurons, top.map((t) => ({ key: t.name, label: `neuron ${t.name}`, value: t.value })), {});
    drawHeads();
    options.onState?.({ ...state });
  }

  function toggle(key) {
    if (!componentKeys(model.cfg).includes(key)) return;
    if (state.ablate[key]) delete state.ablate[key];
    else state.ablate[key] = node["ablate-mode"].value;
    update();
  }

  const touched = () => { writeUrl = Boolean(options.url); };
  el.addEventListener("input", touched, true);
  el.addEventListener("change", touched, true);
  el.addEventListener("click", touched, true);
  node.input.addEventListener("input", () => { state.a = node.input.value; update(); });
  node["input-b"].addEventListener("input", () => { state.b = node["input-b"].value; update(); });
  for (const b of el.querySelectorAll("button.bl-comp")) b.addEventListener("click", () => toggle(b.dataset.component));
  views.attribution.addEventListener("click", (e) => {
    const i = Math.floor(e.offsetY / 16);
    const keys = ["embed", "pos", ...componentKeys(model.cfg)];
    if (i >= 0 && i < keys.length) toggle(keys[i]);
  });
  const onPatch = () => {
    const key = node["patch-component"].value;
    const where = node["patch-position"].value;
    state.patch = key ? { key, position: where === "all" ? null : Number(where) } : null;
    update();
  };
  node["patch-component"].addEventListener("change", onPatch);
  node["patch-position"].addEventListener("change", onPatch);
  const hoverAt = (i) => { if (i !== hover) { hover = i; drawHeads(); } };
  views.tokens.addEventListener("mousemove", (e) => hoverAt(Math.floor(e.offsetX / (500 / (MAX_PARENS + 2)))));
  views.tokens.addEventListener("mouseleave", () => hoverAt(null));
  for (const c of headCanvases) {
    c.addEventListener("mousemove", (e) => {
      const cell = 140 / (last ? last.run.n : 1);
      const row = Math.floor((e.offsetY - 20) / cell);
      hoverAt(row >= 0 && last && row < last.run.n ? row : null);
    });
    c.addEventListener("mouseleave", () => hoverAt(null));
  }
  const onHash = () => {
    if (!ours(window.location.hash)) return;
    const next = parseFragment(window.location.hash);
    if (formatFragment(next) === formatFragment(state)) return;
    Object.assign(state, next);
    update();
  };
  if (options.url) window.addEventListener("hashchange", onHash);
  update();
  return {
    model,
    state,
    set(next) { Object.assign(state, next); update(); },
    destroy() { if (options.url) window.removeEventListener("hashchange", onHash); el.innerHTML = ""; },
  };
}

/** The report's entry point: the explorer in `el` with ids, the URL and window.bracketlens. */
export function boot(el, payload) {
  const explorer = mount(el, payload, { ids: true, url: true });
  window.bracketlens = Object.assign(makeApi(explorer.model), { explorer });
  return explorer;
}

// anywidget: the widget's traits are `payload`, `string` and `compare`.
export default {
  render({ model, el }) {
    const explorer = mount(el, model.get("payload"), {
      string: model.get("string"),
      compare: model.get("compare"),
      onState(state) {
        if (state.a !== model.get("string") || state.b !== model.get("compare")) {
          model.set("string", state.a);
          model.set("compare", state.b);
          model.save_changes();
        }
      },
    });
    const onChange = () => explorer.set({ a: model.get("string"), b: model.get("compare") });
    model.on("change:string", onChange);
    model.on("change:compare", onChange);
    return () => {
      model.off("change:string", onChange);
      model.off("change:compare", onChange);
      explorer.destroy();
    };
  },
};
