// Drawing frames on canvases: stored values → real values (slope/intercept) → window → grey or a
// colour lookup table; an optional map overlay; the colour bar of a map in its units.

/** Colour maps as 256-entry RGB tables (turbo: Google's polynomial approximation; hot; grey). */
function turbo(x) {
  const r = 0.13572138 + x * (4.6153926 + x * (-42.66032258 + x * (132.13108234 + x * (-152.94239396 + x * 59.28637943))));
  const g = 0.09140261 + x * (2.19418839 + x * (4.84296658 + x * (-14.18503333 + x * (4.27729857 + x * 2.82956604))));
  const b = 0.1066733 + x * (12.64194608 + x * (-60.58204836 + x * (110.36276771 + x * (-89.90310912 + x * 27.34824973))));
  return [r, g, b].map((v) => Math.round(255 * Math.min(1, Math.max(0, v))));
}

function hot(x) {
  return [Math.min(1, 3 * x), Math.min(1, Math.max(0, 3 * x - 1)), Math.min(1, Math.max(0, 3 * x - 2))].map((v) => Math.round(255 * v));
}

export const LUTS = {
  turbo: Array.from({ length: 256 }, (_, i) => turbo(i / 255)),
  hot: Array.from({ length: 256 }, (_, i) => hot(i / 255)),
  gray: Array.from({ length: 256 }, (_, i) => [i, i, i]),
};

/** Typed array of a frame's stored values from the native little-endian bytes WADO-RS sends. */
export function storedValues(buffer, ds) {
  const bits = Number(ds.BitsAllocated || 16);
  const signed = Number(ds.PixelRepresentation || 0) === 1;
  if (ds.FloatPixelData !== undefined || (bits === 32 && ds.SOPClassUID === "1.2.840.10008.5.1.4.1.1.30" && ds.PixelData === undefined)) {
    return new Float32Array(buffer.slice(0));
  }
  if (ds.DoubleFloatPixelData !== undefined) return new Float64Array(buffer.slice(0));
  if (bits === 8) return signed ? new Int8Array(buffer) : new Uint8Array(buffer);
  if (bits === 32) return signed ? new Int32Array(buffer.slice(0)) : new Uint32Array(buffer.slice(0));
  return signed ? new Int16Array(buffer.slice(0)) : new Uint16Array(buffer.slice(0));
}

export function realValues(stored, mapping) {
  const out = new Float32Array(stored.length);
  for (let i = 0; i < stored.length; i++) out[i] = stored[i] * mapping.slope + mapping.intercept;
  return out;
}

/** 1st–99th percentile of the finite values (a robust default window / colour range). */
export function robustRange(values, lo = 0.01, hi = 0.99) {
  const finite = Array.from(values).filter((v) => Number.isFinite(v)).sort((a, b) => a - b);
  if (!finite.length) return [0, 1];
  const a = finite[Math.floor(lo * (finite.length - 1))];
  let b = finite[Math.floor(hi * (finite.length - 1))];
  if (b <= a) b = a + 1;
  return [a, b];
}

/**
 * Draw ``values`` (rows × cols) into ``canvas``: window [lo, hi] through ``lut``; optionally an
 * ``overlay`` {values, lo, hi, lut, opacity} (a map on the source, same grid), and markers.
 */
export function draw(canvas, values, rows, cols, lo, hi, lut = LUTS.gray, overlay = null, markers = []) {
  canvas.width = cols;
  canvas.height = rows;
  const ctx = canvas.getContext("2d");
  const img = ctx.createImageData(cols, rows);
  const span = hi - lo || 1;
  for (let i = 0; i < rows * cols; i++) {
    let v = values[i];
    let k = Number.isFinite(v) ? Math.round(255 * Math.min(1, Math.max(0, (v - lo) / span))) : 0;
    let [r, g, b] = lut[k];
    if (overlay) {
      v = overlay.values[i];
      if (Number.isFinite(v) && v > overlay.lo) {
        k = Math.round(255 * Math.min(1, Math.max(0, (v - overlay.lo) / (overlay.hi - overlay.lo || 1))));
        const [or, og, ob] = overlay.lut[k];
        const a = overlay.opacity;
        r = Math.round((1 - a) * r + a * or);
        g = Math.round((1 - a) * g + a * og);
        b = Math.round((1 - a) * b + a * ob);
      }
    }
    img.data[4 * i] = r;
    img.data[4 * i + 1] = g;
    img.data[4 * i + 2] = b;
    img.data[4 * i + 3] = 255;
  }
  ctx.putImageData(img, 0, 0);
  for (const m of markers) {
    ctx.strokeStyle = m.colour || "#ff2d2d";
    ctx.lineWidth = 0.35;
    ctx.strokeRect(m.x + 0.1, m.y + 0.1, 0.8, 0.8);
  }
}

/** A vertical colour bar with ticks in the map's unit. */
export function drawColourBar(canvas, lo, hi, lut, unit) {
  const w = 90;
  const h = 200;
  canvas.width = w;
  canvas.height = h;
  const ctx = canvas.getContext("2d");
  ctx.fillStyle = "#111";
  ctx.fillRect(0, 0, w, h);
  const top = 18;
  const bottom = h - 10;
  for (let y = top; y <= bottom; y++) {
    const k = Math.round(255 * (1 - (y - top) / (bottom - top)));
    const [r, g, b] = lut[k];
    ctx.fillStyle = `rgb(${r},${g},${b})`;
    ctx.fillRect(4, y, 16, 1);
  }
  ctx.fillStyle = "#eee";
  ctx.font = "10px sans-serif";
  ctx.fillText(unit || "(no unit)", 2, 11);
  for (let i = 0; i <= 4; i++) {
    const y = top + ((bottom - top) * i) / 4;
    const v = hi - ((hi - lo) * i) / 4;
    ctx.fillRect(20, y, 4, 1);
    ctx.fillText(formatValue(v), 27, y + 3);
  }
}

export function formatValue(v) {
  if (!Number.isFinite(v)) return "—";
  const a = Math.abs(v);
  if (a !== 0 && (a < 0.01 || a >= 10000)) return v.toExponential(2);
  return v.toPrecision(a >= 100 ? 4 : 3).replace(/\.?0+$/, "");
}
