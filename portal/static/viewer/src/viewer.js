// Lightbox embedded viewer: Cornerstone3D stack + MPR viewer behind a small API.
//
//   import { mount } from '/static/viewer/dist/viewer.js';   // or window.LightboxViewer.mount
//   const viewer = mount(element, { instances: [{ url, frames }], overlay: { patient, series } });
//
// See ../README.md for the whole API.
import {
  RenderingEngine,
  Enums as CoreEnums,
  init as coreInit,
  cache,
  imageLoader,
  imageLoadPoolManager,
  metaData,
  volumeLoader,
  setVolumesForViewports,
  utilities as csUtils,
  eventTarget as csEventTarget,
} from '@cornerstonejs/core';
import {
  init as toolsInit,
  addTool,
  ToolGroupManager,
  Enums as ToolEnums,
  WindowLevelTool,
  PanTool,
  ZoomTool,
  StackScrollTool,
  LengthTool,
  ProbeTool,
  CrosshairsTool,
  annotation as csAnnotation,
  synchronizers,
  utilities as toolUtils,
} from '@cornerstonejs/tools';
// The ./imageLoader entry has init and wadouri without the codecs (those live in the worker).
import { init as loaderInit, wadouri } from '@cornerstonejs/dicom-image-loader/imageLoader';

export const VERSION = '1.0.0';

export const PRESETS = {
  lung: { windowWidth: 1500, windowCenter: -600, label: 'Lung' },
  bone: { windowWidth: 2000, windowCenter: 300, label: 'Bone' },
  brain: { windowWidth: 80, windowCenter: 40, label: 'Brain' },
  abdomen: { windowWidth: 400, windowCenter: 50, label: 'Abdomen' },
};

const WL_STORAGE_KEY = 'lightbox.viewer.wl';
const ENGINE_ID = 'lightbox-viewer';
const DEFAULT_CACHE_MB = 512;
const { MouseBindings, KeyboardBindings } = ToolEnums;
const { ViewportType, OrientationAxis, Events } = CoreEnums;

// A click marker that only says where the reviewer clicked (no pixel statistics).
class MarkTool extends ProbeTool {
  static toolName = 'LightboxMark';
}

// ---------------------------------------------------------------------------
// Global, once per page: Cornerstone init and one RenderingEngine for every viewport
// (one engine per viewport runs out of WebGL contexts).

let engine = null;
let initialised = false;

function setup({ cacheSizeMB = DEFAULT_CACHE_MB, maxWebWorkers } = {}) {
  if (!initialised) {
    coreInit({ rendering: { webGlContextCount: 2 } });
    const cores = (typeof navigator !== 'undefined' && navigator.hardwareConcurrency) || 2;
    loaderInit({ maxWebWorkers: maxWebWorkers || Math.max(1, Math.min(4, Math.floor(cores / 2))) });
    toolsInit();
    for (const Tool of [WindowLevelTool, PanTool, ZoomTool, StackScrollTool, LengthTool, MarkTool, CrosshairsTool]) {
      addTool(Tool);
    }
    initialised = true;
  }
  cache.setMaxCacheSize(cacheSizeMB * 1024 * 1024);
  if (!engine || engine.hasBeenDestroyed) engine = new RenderingEngine(ENGINE_ID);
  return engine;
}

// ---------------------------------------------------------------------------
// Image ids

/** `url` + frame number (1-based) → a wadouri image id the loader understands. */
export function frameImageId(url, frame) {
  const base = url.startsWith('wadouri:') ? url : `wadouri:${url}`;
  if (!frame) return base;
  return `${base}${base.includes('?') ? '&' : '?'}frame=${frame}`;
}

/** [{url, frames}] → flat list of image ids (multi-frame instances expand to one id per frame). */
export function instancesToImageIds(instances) {
  const ids = [];
  for (const inst of instances || []) {
    const n = Number(inst.frames || inst.numberOfFrames || 1);
    if (n > 1) for (let f = 1; f <= n; f++) ids.push(frameImageId(inst.url, f));
    else ids.push(frameImageId(inst.url));
  }
  return ids;
}

// [ids] | {instances} | {imageIds} → image ids; plain URLs get the wadouri: scheme.
function toIdList(v) {
  if (!v) return [];
  const ids = Array.isArray(v) ? v : v.instances ? instancesToImageIds(v.instances) : v.imageIds || [];
  return ids.map((id) => (/^(wadouri|wadors|dicomweb|dicomfile):/.test(id) ? id : `wadouri:${id}`));
}

function urlOf(imageId) {
  return wadouri.parseImageId(imageId).url;
}

function hasFrame(imageId) {
  return /[?&]frame=\d+$/.test(imageId);
}

function numberOfFrames(imageId) {
  const ds = wadouri.dataSetCacheManager.get(urlOf(imageId));
  return (ds && ds.intString('x00280008')) || 1;
}

// Expand bare wadouri ids of multi-frame files into ?frame=N ids. Only instances whose
// file is already loaded can be inspected; the caller loads the first one beforehand and, if
// it is multi-frame, loads every instance (they need to be fetched to be shown anyway).
async function expandMultiframe(imageIds) {
  const bare = imageIds.filter((id) => !hasFrame(id));
  if (!bare.length) return imageIds;
  await imageLoader.loadAndCacheImage(bare[0]);
  if (numberOfFrames(bare[0]) <= 1 && bare.length === imageIds.length && imageIds.length > 1) {
    // First instance is single-frame: treat the series as single-frame instances.
    return imageIds;
  }
  const out = [];
  for (const id of imageIds) {
    if (hasFrame(id)) {
      out.push(id);
      continue;
    }
    if (!wadouri.dataSetCacheManager.isLoaded(urlOf(id))) {
      await imageLoader.loadAndCacheImage(id);
    }
    const n = numberOfFrames(id);
    if (n > 1) for (let f = 1; f <= n; f++) out.push(frameImageId(urlOf(id), f));
    else out.push(id);
  }
  return out;
}

// Drop images (and the parsed Part-10 files the wadouri loader keeps) from memory.
function decache(imageIds, keep = new Set()) {
  const urls = new Set();
  for (const id of imageIds) {
    if (keep.has(id)) continue;
    if (cache.getImageLoadObject(id)) {
      try {
        cache.removeImageLoadObject(id, { force: true });
      } catch (e) {
        /* already gone */
      }
    }
    urls.add(urlOf(id));
  }
  const keepUrls = new Set([...keep].map(urlOf));
  for (const url of urls) {
    if (keepUrls.has(url)) continue;
    for (let i = 0; i < 10000 && wadouri.dataSetCacheManager.isLoaded(url); i++) {
      wadouri.dataSetCacheManager.unload(url);
    }
  }
}

// ---------------------------------------------------------------------------
// Window / level helpers

// Viewport properties, or {} while a volume viewport has no volume yet.
function propsOf(vp) {
  try {
    return vp.getProperties() || {};
  } catch (e) {
    return {};
  }
}

function toWL(voiRange) {
  if (!voiRange) return { windowCenter: undefined, windowWidth: undefined };
  return csUtils.windowLevel.toWindowLevel(voiRange.lower, voiRange.upper);
}

function toRange(windowWidth, windowCenter) {
  return csUtils.windowLevel.toLowHighRange(windowWidth, windowCenter);
}

/** Window from the histogram: the [lo, hi] percentiles of the (modality-scaled) pixels. */
export function histogramWindow(image, lo = 0.01, hi = 0.99) {
  let pixels = image.getPixelData();
  const n = pixels.length;
  const step = Math.max(1, Math.floor(n / 262144));
  let min = Infinity;
  let max = -Infinity;
  for (let i = 0; i < n; i += step) {
    const v = pixels[i];
    if (v < min) min = v;
    if (v > max) max = v;
  }
  if (!Number.isFinite(min) || !Number.isFinite(max)) return null;
  const slope = image.preScale?.scaled ? 1 : image.slope ?? 1;
  const intercept = image.preScale?.scaled ? 0 : image.intercept ?? 0;
  if (max === min) {
    const c = min * slope + intercept;
    return { windowCenter: c, windowWidth: Math.max(1, Math.abs(c) || 1) };
  }
  const bins = 4096;
  const hist = new Uint32Array(bins);
  const scale = (bins - 1) / (max - min);
  let count = 0;
  for (let i = 0; i < n; i += step) {
    hist[Math.floor((pixels[i] - min) * scale)]++;
    count++;
  }
  const lowTarget = count * lo;
  const highTarget = count * hi;
  let acc = 0;
  let lowBin = 0;
  let highBin = bins - 1;
  let foundLow = false;
  for (let b = 0; b < bins; b++) {
    acc += hist[b];
    if (!foundLow && acc >= lowTarget) {
      lowBin = b;
      foundLow = true;
    }
    if (acc >= highTarget) {
      highBin = b;
      break;
    }
  }
  let lower = (min + lowBin / scale) * slope + intercept;
  let upper = (min + (highBin + 1) / scale) * slope + intercept;
  if (upper <= lower) upper = lower + 1;
  const windowWidth = Math.max(1, Math.round(upper - lower));
  const windowCenter = Math.round((upper + lower) / 2);
  return { windowCenter, windowWidth };
}

function loadLock() {
  try {
    return JSON.parse(localStorage.getItem(WL_STORAGE_KEY) || 'null') || { locked: false };
  } catch (e) {
    return { locked: false };
  }
}

function saveLock(state) {
  try {
    localStorage.setItem(WL_STORAGE_KEY, JSON.stringify(state));
  } catch (e) {
    /* private mode */
  }
}

// ---------------------------------------------------------------------------
// DOM

const CSS = `
.lbv{position:relative;display:flex;flex-direction:column;background:#000;color:#ddd;
  font:12px/1.3 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;min-height:240px;height:100%;
  user-select:none;-webkit-user-select:none;overflow:hidden}
.lbv-toolbar{display:flex;flex-wrap:wrap;gap:2px;align-items:center;padding:3px 4px;
  background:#16181c;border-bottom:1px solid #2a2d33}
.lbv-toolbar button{font:inherit;color:#cfd3da;background:#23262c;border:1px solid #33373e;
  border-radius:3px;padding:2px 7px;height:24px;cursor:pointer;white-space:nowrap}
.lbv-toolbar button:hover{background:#2e3239;color:#fff}
.lbv-toolbar button[aria-pressed="true"]{background:#2f5d8a;border-color:#4a7fb3;color:#fff}
.lbv-toolbar button:disabled{opacity:.4;cursor:default}
.lbv-sep{width:1px;height:18px;background:#33373e;margin:0 4px}
.lbv-stage{position:relative;flex:1;min-height:0;display:grid;grid-template-columns:1fr;gap:2px;background:#111}
.lbv-stage.lbv-mpr{grid-template-columns:1fr 1fr;grid-template-rows:1fr 1fr}
.lbv-stage.lbv-mpr .lbv-vp:first-child{grid-row:1 / span 2}
.lbv-vp{position:relative;min-width:0;min-height:0;overflow:hidden;background:#000}
.lbv-vp.lbv-active{outline:1px solid #4a7fb3;outline-offset:-1px}
.lbv-el{position:absolute;inset:0}
.lbv-ov{position:absolute;pointer-events:none;color:#e8e8e8;text-shadow:0 0 2px #000,0 0 2px #000;
  white-space:pre;font-size:12px;z-index:2}
.lbv-tl{top:4px;left:6px}.lbv-bl{bottom:4px;left:6px}.lbv-br{bottom:4px;right:6px;text-align:right}
.lbv-tr{top:4px;right:6px;text-align:right;color:#f3c969}
.lbv-heat{position:absolute;inset:0;width:100%;height:100%;pointer-events:none;z-index:1}
.lbv-msg{position:absolute;left:50%;top:50%;transform:translate(-50%,-50%);color:#aaa;pointer-events:none;z-index:3}
`;

function injectCss() {
  if (document.getElementById('lightbox-viewer-css')) return;
  const style = document.createElement('style');
  style.id = 'lightbox-viewer-css';
  style.textContent = CSS;
  document.head.appendChild(style);
}

const TOOLBAR = [
  ['auto-wl', 'Auto', 'Automatic window/level from the histogram (1st–99th percentile)'],
  ['preset-lung', 'Lung', 'Lung window (W 1500 / L −600)'],
  ['preset-bone', 'Bone', 'Bone window (W 2000 / L 300)'],
  ['preset-brain', 'Brain', 'Brain window (W 80 / L 40)'],
  ['preset-abdomen', 'Abd', 'Abdomen window (W 400 / L 50)'],
  ['lock-wl', 'Lock W/L', 'Keep this window/level for the next series'],
  null,
  ['invert', 'Invert', 'Invert grey scale'],
  ['reset', 'Reset', 'Reset zoom, pan, window/level and invert'],
  ['cine', 'Cine', 'Play / pause through the frames'],
  null,
  ['length', 'Length', 'Measure a length (drag)'],
  ['mark', 'Mark', 'Mark a location (click)'],
  null,
  ['mpr', 'MPR', 'Axial / sagittal / coronal planes (volumes)'],
  ['crosshairs', 'Cross', 'Crosshairs (MPR): click or drag to move the point all three planes go through'],
  ['screenshot', 'PNG', 'Download a screenshot of the viewport (PNG)'],
];

let controllerSeq = 0;

// ---------------------------------------------------------------------------
// Controller

const AUTO_WINDOW_MODALITIES = new Set(['CR', 'DX', 'MG', 'RG', 'PX', 'IO']);

class Controller {
  constructor(element, options = {}) {
    this.element = element;
    this.options = options;
    this.n = ++controllerSeq;
    this.engine = setup(options);
    this.imageIds = [];
    this.prefetchIds = [];
    this.mode = 'stack';
    this.tool = null; // null | 'length' | 'mark'
    this.viewportIds = [];
    this.activeViewportId = null;
    this.cineOn = false;
    this.lock = loadLock();
    this.loadToken = 0;
    this.destroyed = false;
    this.overlay = { patient: '', series: '', ...(options.overlay || {}) };
    this.onLocation = options.onLocation;
    this._listeners = [];
    this._buildDom();
    this._setupToolGroups();
    this.ready = this._load(options);
  }

  // --- public API -------------------------------------------------------

  /** Show another series; `ids` is an image id list or {instances, imageIds, overlay, prefetch}. */
  setImageIds(ids, extra = {}) {
    const opts = Array.isArray(ids) ? { ...extra, imageIds: ids } : { ...ids };
    if (opts.overlay) this.overlay = { ...this.overlay, ...opts.overlay };
    this.ready = this._load(opts);
    return this.ready;
  }

  next() {
    return this.scroll(1);
  }

  prev() {
    return this.scroll(-1);
  }

  scroll(delta) {
    const vp = this._activeViewport();
    if (!vp) return this.getState().index;
    if (this.mode === 'stack') {
      const i = vp.getCurrentImageIdIndex();
      const j = Math.max(0, Math.min(this.imageIds.length - 1, i + delta));
      if (j !== i) vp.setImageIdIndex(j);
      return j;
    }
    vp.scroll(delta);
    return this.getState().index;
  }

  getState() {
    const vp = this._activeViewport();
    let index = 0;
    let count = this.imageIds.length;
    if (vp && this.mode === 'stack') index = vp.getCurrentImageIdIndex();
    if (vp && this.mode === 'mpr') {
      index = vp.getSliceIndex();
      count = vp.getNumberOfSlices();
    }
    const props = vp ? propsOf(vp) : {};
    const { windowCenter, windowWidth } = toWL(props.voiRange);
    const r = (v) => (v === undefined ? undefined : Math.round(v * 100) / 100);
    return {
      index,
      count,
      windowCenter: r(windowCenter),
      windowWidth: r(windowWidth),
      invert: !!props.invert,
      mode: this.mode,
      tool: this.tool,
      locked: !!this.lock.locked,
      cine: this.cineOn,
      imageId: this.mode === 'stack' && vp ? vp.getCurrentImageId() : undefined,
      crosshairs: this.crosshairs(),
      heatmap: this.heatmap ? { url: this.heatmap.url, imageIndex: this.heatmap.imageIndex, shown: !!this._heatShown } : null,
    };
  }

  setWindow(windowWidth, windowCenter) {
    for (const vp of this._viewports()) {
      vp.setProperties({ voiRange: toRange(windowWidth, windowCenter) });
      vp.render();
    }
  }

  preset(name) {
    const p = PRESETS[name];
    if (p) this.setWindow(p.windowWidth, p.windowCenter);
  }

  /**
   * Overlay an image (the AI heatmap: an RGBA PNG the size of the DICOM image) on the stack.
   * `imageIndex` is the 0-based image it belongs to (null: every image); it shows only there and
   * follows zoom, pan, rotation and flips. `setHeatmap(null)` removes it. Resolves true when set.
   */
  async setHeatmap(url, { imageIndex = null, opacity = 0.6 } = {}) {
    if (!url) {
      this.heatmap = null;
    } else {
      const img = new Image();
      img.src = url;
      await img.decode();
      this.heatmap = { url, img, imageIndex, opacity };
    }
    for (const id of this.viewportIds) this._drawHeatmap(id);
    return !!this.heatmap;
  }

  /** Show image `index` (0-based) of the stack; returns the index shown. */
  goTo(index) {
    return this.scroll(index - this.getState().index);
  }

  autoWindow() {
    const image = this._currentImage();
    if (!image) return;
    const wl = histogramWindow(image);
    if (wl) this.setWindow(wl.windowWidth, wl.windowCenter);
  }

  setLock(locked = !this.lock.locked) {
    const { windowCenter, windowWidth } = this.getState();
    this.lock = { locked, windowCenter, windowWidth };
    saveLock(this.lock);
    this._syncButtons();
  }

  invert() {
    for (const vp of this._viewports()) {
      vp.setProperties({ invert: !propsOf(vp).invert });
      vp.render();
    }
    this._updateOverlay();
  }

  reset() {
    this.stopCine();
    for (const vp of this._viewports()) {
      // Back to the image's defaults (MONOCHROME1 images default to inverted).
      vp.resetProperties?.();
      vp.resetCamera();
      vp.render();
    }
    this._applyInitialWindow(true);
  }

  toggleCine() {
    return this.cineOn ? this.stopCine() : this.playCine();
  }

  playCine(framesPerSecond) {
    const vp = this._activeViewport();
    if (!vp || this.getState().count < 2) return false;
    let fps = framesPerSecond;
    if (!fps) {
      const ft = metaData.get('cineModule', this.imageIds[0])?.frameTime;
      fps = ft ? Math.round(1000 / ft) : 15;
    }
    fps = Math.max(1, Math.min(60, fps));
    toolUtils.cine.playClip(vp.element, { framesPerSecond: fps, loop: true });
    this.cineOn = true;
    this._syncButtons();
    return true;
  }

  stopCine() {
    for (const vp of this._viewports()) {
      try {
        toolUtils.cine.stopClip(vp.element);
      } catch (e) {
        /* not playing */
      }
    }
    this.cineOn = false;
    this._syncButtons();
    return false;
  }

  /** 'length' | 'mark' | null (window/level on the left button). */
  setTool(name) {
    this.tool = this.tool === name ? null : name;
    if (this.tool === 'crosshairs' && this.mode !== 'mpr') this.tool = null;
    this._applyTool();
  }

  _applyTool() {
    for (const tg of this._toolGroups()) {
      tg.setToolPassive(LengthTool.toolName);
      tg.setToolPassive(MarkTool.toolName);
      tg.setToolPassive(WindowLevelTool.toolName);
      const mpr = tg.id === this.mprGroupId && this.mode === 'mpr';
      if (mpr) tg.setToolPassive(CrosshairsTool.toolName); // passive: drawn, its lines still draggable
      const primary = [{ mouseButton: MouseBindings.Primary }];
      if (this.tool === 'length') tg.setToolActive(LengthTool.toolName, { bindings: primary });
      else if (this.tool === 'mark') tg.setToolActive(MarkTool.toolName, { bindings: primary });
      else if (this.tool === 'crosshairs' && mpr) tg.setToolActive(CrosshairsTool.toolName, { bindings: primary });
      else tg.setToolActive(WindowLevelTool.toolName, { bindings: primary });
    }
    this._syncButtons();
  }

  /** MPR: the point (patient mm, LPS) the crosshairs put all three planes through; null outside MPR. */
  crosshairs() {
    if (this.mode !== 'mpr') return null;
    const tool = ToolGroupManager.getToolGroup(this.mprGroupId)?.getToolInstance(CrosshairsTool.toolName);
    return tool ? tool.toolCenter.map((v) => Math.round(v * 100) / 100) : null;
  }

  /** PNG of the active viewport with its overlay; Blob, or a data URL with type 'dataURL'. */
  async screenshot(type = 'blob') {
    const vp = this._activeViewport();
    if (!vp) return null;
    const src = vp.canvas;
    const out = document.createElement('canvas');
    out.width = src.width;
    out.height = src.height;
    const ctx = out.getContext('2d');
    ctx.fillStyle = '#000';
    ctx.fillRect(0, 0, out.width, out.height);
    ctx.drawImage(src, 0, 0);
    const ratio = src.width / Math.max(1, src.clientWidth || src.width);
    // Annotations (SVG layer), best effort.
    const svg = vp.element.querySelector('svg.svg-layer');
    if (svg && svg.childElementCount) {
      try {
        const xml = new XMLSerializer().serializeToString(svg);
        const img = new Image();
        img.src = 'data:image/svg+xml;charset=utf-8,' + encodeURIComponent(xml);
        await img.decode();
        ctx.drawImage(img, 0, 0, out.width, out.height);
      } catch (e) {
        /* annotations left out */
      }
    }
    const ov = this._overlays.get(vp.id);
    if (ov) {
      ctx.font = `${Math.round(12 * ratio)}px system-ui, sans-serif`;
      ctx.fillStyle = '#e8e8e8';
      ctx.shadowColor = '#000';
      ctx.shadowBlur = 2 * ratio;
      const lh = 15 * ratio;
      const pad = 6 * ratio;
      const draw = (text, x, y0, align, fromBottom) => {
        const lines = (text || '').split('\n').filter(Boolean);
        ctx.textAlign = align;
        lines.forEach((line, i) => {
          const y = fromBottom ? out.height - pad - (lines.length - 1 - i) * lh : y0 + (i + 1) * lh;
          ctx.fillText(line, x, y);
        });
      };
      draw(ov.tl.textContent, pad, 0, 'left', false);
      draw(ov.bl.textContent, pad, 0, 'left', true);
      draw(ov.br.textContent, out.width - pad, 0, 'right', true);
    }
    if (type === 'dataURL') return out.toDataURL('image/png');
    return new Promise((resolve) => out.toBlob(resolve, 'image/png'));
  }

  async downloadScreenshot() {
    const blob = await this.screenshot('blob');
    if (!blob) return;
    const a = document.createElement('a');
    const state = this.getState();
    const name = (this.overlay.series || 'lightbox').replace(/[^\w.-]+/g, '_').slice(0, 60);
    a.download = `${name}-${state.index + 1}.png`;
    a.href = URL.createObjectURL(blob);
    document.body.appendChild(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(a.href), 5000);
  }

  isVolume() {
    return isVolumeStack(this.imageIds);
  }

  async setMode(mode) {
    if (mode === this.mode) return true;
    this.stopCine();
    if (mode === 'mpr') {
      if (this.imageIds.length < 3) {
        this._message('MPR needs a volume (3 or more parallel slices)', 2500);
        return false;
      }
      this._message('Loading volume…');
      const token = this.loadToken;
      try {
        await Promise.all(this.imageIds.map((id) => imageLoader.loadAndCacheImage(id)));
      } catch (e) {
        this._message('Could not load every slice', 2500);
        return false;
      }
      if (token !== this.loadToken) return false;
      if (!this.isVolume()) {
        this._message('Not a volume: MPR needs 3 or more parallel slices', 2500);
        return false;
      }
      await this._showMpr();
    } else {
      await this._showStack(this._lastStackIndex || 0);
    }
    this._syncButtons();
    return true;
  }

  destroy() {
    if (this.destroyed) return;
    this.destroyed = true;
    this.loadToken++;
    this.stopCine();
    this._teardownViewports();
    for (const id of [this.stackGroupId, this.mprGroupId]) ToolGroupManager.destroyToolGroup(id);
    this.voiSync?.destroy();
    for (const [target, type, fn] of this._listeners) target.removeEventListener(type, fn);
    this._resizeObserver?.disconnect();
    this._removeAnnotations(this.imageIds);
    decache([...this.imageIds, ...this.prefetchIds]);
    this._dropVolume();
    this.element.classList.remove('lbv');
    this.element.replaceChildren();
  }

  // --- internals --------------------------------------------------------

  _on(target, type, fn, opts) {
    target.addEventListener(type, fn, opts);
    this._listeners.push([target, type, fn]);
  }

  _buildDom() {
    injectCss();
    const el = this.element;
    el.replaceChildren();
    el.classList.add('lbv');
    this.toolbar = document.createElement('div');
    this.toolbar.className = 'lbv-toolbar';
    this.toolbar.setAttribute('role', 'toolbar');
    for (const item of TOOLBAR) {
      if (!item) {
        const sep = document.createElement('span');
        sep.className = 'lbv-sep';
        this.toolbar.appendChild(sep);
        continue;
      }
      const [action, label, title] = item;
      const b = document.createElement('button');
      b.type = 'button';
      b.dataset.action = action;
      b.textContent = label;
      b.title = title;
      this.toolbar.appendChild(b);
    }
    this.stage = document.createElement('div');
    this.stage.className = 'lbv-stage';
    this.msg = document.createElement('div');
    this.msg.className = 'lbv-msg';
    el.append(this.toolbar, this.stage);
    this._overlays = new Map();
    this._on(this.toolbar, 'click', (e) => {
      const b = e.target.closest('button[data-action]');
      if (b && !b.disabled) this._action(b.dataset.action);
    });
    // Keep the browser's own menus and middle-click scrolling out of the viewport.
    this._on(this.stage, 'contextmenu', (e) => e.preventDefault());
    this._on(this.stage, 'mousedown', (e) => {
      if (e.button === 1) e.preventDefault();
      const vpEl = e.target.closest('.lbv-vp');
      if (vpEl) this._setActive(vpEl.dataset.viewportId);
    });
    this._resizeObserver = new ResizeObserver(() => {
      if (!this.destroyed && this.viewportIds.length) this.engine.resize(true, true);
    });
    this._resizeObserver.observe(this.stage);
    this._on(csEventTarget, ToolEnums.Events.ANNOTATION_COMPLETED, (evt) => this._annotationCompleted(evt));
  }

  _action(action) {
    if (action.startsWith('preset-')) return this.preset(action.slice(7));
    switch (action) {
      case 'auto-wl':
        return this.autoWindow();
      case 'lock-wl':
        return this.setLock();
      case 'invert':
        return this.invert();
      case 'reset':
        return this.reset();
      case 'cine':
        return this.toggleCine();
      case 'length':
        return this.setTool('length');
      case 'mark':
        return this.setTool('mark');
      case 'screenshot':
        return this.downloadScreenshot();
      case 'mpr':
        return this.setMode(this.mode === 'mpr' ? 'stack' : 'mpr');
      case 'crosshairs':
        return this.setTool('crosshairs');
      default:
        return undefined;
    }
  }

  _syncButtons() {
    const q = (a) => this.toolbar.querySelector(`[data-action="${a}"]`);
    q('lock-wl').setAttribute('aria-pressed', String(!!this.lock.locked));
    q('length').setAttribute('aria-pressed', String(this.tool === 'length'));
    q('mark').setAttribute('aria-pressed', String(this.tool === 'mark'));
    q('cine').setAttribute('aria-pressed', String(this.cineOn));
    q('mpr').setAttribute('aria-pressed', String(this.mode === 'mpr'));
    q('cine').disabled = this.mode !== 'stack' || this.imageIds.length < 2;
    q('mpr').disabled = this.imageIds.length < 3;
    q('crosshairs').setAttribute('aria-pressed', String(this.tool === 'crosshairs'));
    q('crosshairs').hidden = this.mode !== 'mpr';
  }

  _setupToolGroups() {
    this.stackGroupId = `lbv-${this.n}-stack`;
    this.mprGroupId = `lbv-${this.n}-mpr`;
    for (const id of [this.stackGroupId, this.mprGroupId]) {
      const tg = ToolGroupManager.createToolGroup(id);
      tg.addTool(WindowLevelTool.toolName);
      tg.addTool(PanTool.toolName);
      tg.addTool(ZoomTool.toolName);
      tg.addTool(StackScrollTool.toolName);
      tg.addTool(LengthTool.toolName);
      tg.addTool(MarkTool.toolName, { getTextLines: () => [] });
      // Crosshairs only in MPR: the reference lines of the other two planes, through one shared point.
      if (id === this.mprGroupId) tg.addTool(CrosshairsTool.toolName, { mobile: { enabled: false } });
      tg.setToolActive(WindowLevelTool.toolName, { bindings: [{ mouseButton: MouseBindings.Primary }] });
      tg.setToolActive(PanTool.toolName, {
        bindings: [
          { mouseButton: MouseBindings.Auxiliary },
          { mouseButton: MouseBindings.Primary, modifierKey: KeyboardBindings.Shift },
        ],
      });
      tg.setToolActive(ZoomTool.toolName, {
        bindings: [
          { mouseButton: MouseBindings.Secondary },
          { mouseButton: MouseBindings.Wheel, modifierKey: KeyboardBindings.Ctrl },
          { mouseButton: MouseBindings.Primary, modifierKey: KeyboardBindings.Ctrl },
        ],
      });
      tg.setToolActive(StackScrollTool.toolName, { bindings: [{ mouseButton: MouseBindings.Wheel }] });
      tg.setToolPassive(LengthTool.toolName);
      tg.setToolPassive(MarkTool.toolName);
    }
  }

  _toolGroups() {
    return [this.stackGroupId, this.mprGroupId].map((id) => ToolGroupManager.getToolGroup(id)).filter(Boolean);
  }

  _viewports() {
    return this.viewportIds.map((id) => this.engine.getViewport(id)).filter(Boolean);
  }

  _activeViewport() {
    if (!this.viewportIds.length) return null;
    const id = this.viewportIds.includes(this.activeViewportId) ? this.activeViewportId : this.viewportIds[0];
    return this.engine.getViewport(id) || null;
  }

  _setActive(viewportId) {
    if (!viewportId || viewportId === this.activeViewportId) return;
    this.activeViewportId = viewportId;
    for (const vpEl of this.stage.querySelectorAll('.lbv-vp')) {
      vpEl.classList.toggle('lbv-active', this.mode === 'mpr' && vpEl.dataset.viewportId === viewportId);
    }
  }

  _currentImage() {
    const vp = this._activeViewport();
    if (!vp) return null;
    if (this.mode === 'stack') return cache.getImage(vp.getCurrentImageId());
    // MPR: the acquired slice nearest the middle of the volume is a fair sample.
    const id = this.imageIds[Math.floor(this.imageIds.length / 2)];
    return cache.getImage(id);
  }

  _message(text, ms) {
    clearTimeout(this._msgTimer);
    if (!text) {
      this.msg.remove();
      return;
    }
    this.msg.textContent = text;
    this.stage.appendChild(this.msg);
    if (ms) this._msgTimer = setTimeout(() => this.msg.remove(), ms);
  }

  _makeViewportDiv(viewportId, label) {
    const vpEl = document.createElement('div');
    vpEl.className = 'lbv-vp';
    vpEl.dataset.viewportId = viewportId;
    const el = document.createElement('div');
    el.className = 'lbv-el';
    const ov = {};
    for (const pos of ['tl', 'tr', 'bl', 'br']) {
      ov[pos] = document.createElement('div');
      ov[pos].className = `lbv-ov lbv-${pos}`;
      vpEl.appendChild(ov[pos]);
    }
    ov.label = label;
    // The AI heatmap layer: drawn over the image, under the text, following zoom and pan.
    ov.heat = document.createElement('canvas');
    ov.heat.className = 'lbv-heat';
    vpEl.prepend(ov.heat);
    vpEl.prepend(el);
    this.stage.appendChild(vpEl);
    this._overlays.set(viewportId, ov);
    this._on(el, Events.IMAGE_RENDERED, () => this._rendered(viewportId));
    this._on(el, Events.VOI_MODIFIED, () => this._voiChanged());
    this._on(el, Events.STACK_NEW_IMAGE, () => this._updateOverlay());
    this._on(el, Events.VOLUME_NEW_IMAGE, () => this._updateOverlay());
    return el;
  }

  _teardownViewports() {
    if (this.mode === 'mpr') {
      ToolGroupManager.getToolGroup(this.mprGroupId)?.setToolDisabled(CrosshairsTool.toolName);
      if (this.tool === 'crosshairs') this.tool = null; // the stack's group kept window/level
    }
    for (const id of this.viewportIds) {
      try {
        toolUtils.stackPrefetch.disable?.(this.engine.getViewport(id)?.element);
      } catch (e) {
        /* not enabled */
      }
      for (const tg of this._toolGroups()) tg.removeViewports(ENGINE_ID, id);
      if (this.engine.getViewport(id)) this.engine.disableElement(id);
    }
    this.viewportIds = [];
    this._overlays.clear();
    this.stage.replaceChildren();
    this.stage.classList.remove('lbv-mpr');
  }

  async _load(opts) {
    const token = ++this.loadToken;
    this.stopCine();
    this.heatmap = null; // a heatmap belongs to one series
    let ids = toIdList(opts.instances ? { instances: opts.instances } : opts.imageIds);
    if (opts.overlay) this.overlay = { ...this.overlay, ...opts.overlay };
    const oldIds = this.imageIds;
    const nextPrefetch = toIdList(opts.prefetch);
    this._firstPaintPending = true;
    this._message(ids.length ? 'Loading…' : 'No images');
    if (!ids.length) {
      this._teardownViewports();
      this.imageIds = [];
      this._syncButtons();
      return this.getState();
    }
    try {
      ids = await expandMultiframe(ids);
    } catch (e) {
      if (token !== this.loadToken) return null;
      this._fail(e);
      return null;
    }
    if (token !== this.loadToken) return null;
    // Bound memory: forget the previous series unless it is still wanted.
    if (oldIds.length) {
      this._removeAnnotations(oldIds);
      decache([...oldIds, ...this.prefetchIds], new Set([...ids, ...nextPrefetch]));
      this._dropVolume();
    }
    this.imageIds = ids;
    this.prefetchIds = nextPrefetch;
    this.mode = 'stack';
    // Open where the page's preview was (e.g. the middle slice), not on slice 1.
    const start = Math.min(Math.max(Math.trunc(Number(opts.startIndex) || 0), 0), ids.length - 1);
    await this._showStack(start);
    this._syncButtons();
    return this.getState();
  }

  _fail(error) {
    console.error('[lightbox viewer]', error);
    this._message('Image could not be loaded');
    this.element.dispatchEvent(new CustomEvent('lightbox:error', { detail: { error: String(error?.message || error) } }));
  }

  async _showStack(index) {
    this._teardownViewports();
    const viewportId = `lbv-${this.n}-stack`;
    const el = this._makeViewportDiv(viewportId, '');
    this.engine.enableElement({
      viewportId,
      type: ViewportType.STACK,
      element: el,
      defaultOptions: { background: [0, 0, 0] },
    });
    this.viewportIds = [viewportId];
    this.activeViewportId = viewportId;
    this.mode = 'stack';
    ToolGroupManager.getToolGroup(this.stackGroupId).addViewport(viewportId, ENGINE_ID);
    const vp = this.engine.getViewport(viewportId);
    const token = this.loadToken;
    try {
      await vp.setStack(this.imageIds, index);
    } catch (e) {
      if (token === this.loadToken) this._fail(e);
      return;
    }
    if (token !== this.loadToken) return;
    this._applyInitialWindow(false);
    vp.render();
    try {
      toolUtils.stackPrefetch.enable(el);
    } catch (e) {
      /* prefetch is an optimisation */
    }
    this._message('');
  }

  async _showMpr() {
    this._lastStackIndex = this.mode === 'stack' ? this._activeViewport()?.getCurrentImageIdIndex() || 0 : 0;
    this._teardownViewports();
    this.stage.classList.add('lbv-mpr');
    const volumeId = `cornerstoneStreamingImageVolume:lbv-${this.n}-${this.loadToken}`;
    const specs = [
      ['axial', OrientationAxis.AXIAL, 'Axial'],
      ['sagittal', OrientationAxis.SAGITTAL, 'Sagittal'],
      ['coronal', OrientationAxis.CORONAL, 'Coronal'],
    ];
    const inputs = specs.map(([key, orientation, label]) => {
      const viewportId = `lbv-${this.n}-${key}`;
      const el = this._makeViewportDiv(viewportId, label);
      return {
        viewportId,
        type: ViewportType.ORTHOGRAPHIC,
        element: el,
        defaultOptions: { orientation, background: [0, 0, 0] },
      };
    });
    for (const input of inputs) this.engine.enableElement(input);
    this.viewportIds = inputs.map((i) => i.viewportId);
    this.activeViewportId = this.viewportIds[0];
    this.mode = 'mpr';
    this._setActive(this.viewportIds[0]);
    const tg = ToolGroupManager.getToolGroup(this.mprGroupId);
    for (const id of this.viewportIds) tg.addViewport(id, ENGINE_ID);
    const volume = await volumeLoader.createAndCacheVolume(volumeId, { imageIds: this.imageIds });
    this.volumeId = volumeId;
    volume.load();
    await setVolumesForViewports(this.engine, [{ volumeId }], this.viewportIds);
    this._firstPaintPending = true;
    this.voiSync?.destroy();
    this.voiSync = synchronizers.createVOISynchronizer(`lbv-${this.n}-voi-${this.loadToken}`, {
      syncInvertState: true,
      syncColormap: false,
    });
    for (const id of this.viewportIds) this.voiSync.add({ renderingEngineId: ENGINE_ID, viewportId: id });
    this._applyInitialWindow(false);
    this.engine.renderViewports(this.viewportIds);
    this._applyTool(); // draws the crosshairs (passive) now that the planes have cameras
    this._message('');
  }

  _dropVolume() {
    if (!this.volumeId) return;
    this.voiSync?.destroy();
    this.voiSync = null;
    try {
      cache.removeVolumeLoadObject(this.volumeId);
    } catch (e) {
      /* gone already */
    }
    this.volumeId = null;
  }

  _applyInitialWindow(ignoreLock) {
    this._applyingWindow = true;
    try {
      this._applyInitialWindowInner(ignoreLock);
    } finally {
      this._applyingWindow = false;
    }
  }

  _applyInitialWindowInner(ignoreLock) {
    const vps = this._viewports();
    if (!vps.length) return;
    if (!ignoreLock && this.lock.locked && this.lock.windowWidth) {
      this.setWindow(this.lock.windowWidth, this.lock.windowCenter);
      return;
    }
    const id = this.mode === 'stack' ? vps[0].getCurrentImageId() : this.imageIds[0];
    // Projection images (CR/DX/MG) carry windows tuned for a printer or none at all: the histogram reads better.
    const modality = id && metaData.get('generalSeriesModule', id)?.modality;
    if (AUTO_WINDOW_MODALITIES.has(modality) && !isColor(id)) {
      this.autoWindow();
      return;
    }
    const voi = id && metaData.get('voiLutModule', id);
    const wc = voi && [].concat(voi.windowCenter ?? [])[0];
    const ww = voi && [].concat(voi.windowWidth ?? [])[0];
    if (wc !== undefined && ww) {
      this.setWindow(ww, wc);
    } else if (!isColor(id)) {
      // No window in the header: use the histogram rather than the full pixel range.
      this.autoWindow();
    }
  }

  _voiChanged() {
    if (this.lock.locked && !this._firstPaintPending && !this._applyingWindow) {
      const { windowCenter, windowWidth } = this.getState();
      if (windowWidth) {
        this.lock = { locked: true, windowCenter, windowWidth };
        saveLock(this.lock);
      }
    }
    this._updateOverlay();
  }

  _rendered(viewportId) {
    this._updateOverlay(viewportId);
    this._drawHeatmap(viewportId);
    if (this._firstPaintPending && this.viewportIds.includes(viewportId)) {
      const vp = this.engine.getViewport(viewportId);
      const hasImage = this.mode === 'stack' ? !!vp?.getCurrentImageId() && !!cache.getImage(vp.getCurrentImageId()) : true;
      if (!hasImage) return;
      this._firstPaintPending = false;
      this.element.dispatchEvent(new CustomEvent('lightbox:rendered', { detail: this.getState() }));
      this._schedulePrefetch();
    }
  }

  _drawHeatmap(viewportId) {
    const canvas = this._overlays.get(viewportId)?.heat;
    const vp = this.engine.getViewport(viewportId);
    if (!canvas) return;
    const dpr = window.devicePixelRatio || 1;
    const w = Math.round(canvas.clientWidth * dpr);
    const h = Math.round(canvas.clientHeight * dpr);
    if (canvas.width !== w || canvas.height !== h) {
      canvas.width = w;
      canvas.height = h;
    }
    const ctx = canvas.getContext('2d');
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.clearRect(0, 0, w, h);
    this._heatShown = false;
    const hm = this.heatmap;
    if (!hm || !vp || this.mode !== 'stack') return;
    if (hm.imageIndex !== null && vp.getCurrentImageIdIndex() !== hm.imageIndex) return;
    const data = vp.getImageData?.();
    if (!data?.imageData || !data.dimensions) return;
    const [cols, rows] = data.dimensions;
    // Map the heatmap's corners through the image's index → world → canvas transforms, so that
    // zoom, pan, rotation and flips apply to it as to the image.
    const at = (i, j) => vp.worldToCanvas(data.imageData.indexToWorld([i, j, 0]));
    const p0 = at(-0.5, -0.5);
    const px = at(cols - 0.5, -0.5);
    const py = at(-0.5, rows - 0.5);
    const iw = hm.img.naturalWidth;
    const ih = hm.img.naturalHeight;
    ctx.setTransform(dpr * (px[0] - p0[0]) / iw, dpr * (px[1] - p0[1]) / iw,
      dpr * (py[0] - p0[0]) / ih, dpr * (py[1] - p0[1]) / ih, dpr * p0[0], dpr * p0[1]);
    ctx.globalAlpha = hm.opacity;
    ctx.drawImage(hm.img, 0, 0);
    this._heatShown = true;
  }

  _updateOverlay(onlyId) {
    for (const id of this.viewportIds) {
      if (onlyId && id !== onlyId) continue;
      const vp = this.engine.getViewport(id);
      const ov = this._overlays.get(id);
      if (!vp || !ov) continue;
      let index = 0;
      let count = this.imageIds.length;
      let imageId;
      if (this.mode === 'stack') {
        index = vp.getCurrentImageIdIndex();
        imageId = vp.getCurrentImageId();
      } else {
        index = vp.getSliceIndex();
        count = vp.getNumberOfSlices();
        imageId = this.imageIds[0];
      }
      const patient = this.overlay.patient || patientName(imageId);
      const series = this.overlay.series || seriesDescription(imageId);
      const props = propsOf(vp);
      const { windowCenter, windowWidth } = toWL(props.voiRange);
      const tl = id === this.viewportIds[0] ? [patient, series].filter(Boolean).join('\n') : '';
      const bl = `${ov.label ? ov.label + '  ' : ''}${index + 1} / ${count}`;
      const br = windowWidth !== undefined ? `W ${Math.round(windowWidth)}  L ${Math.round(windowCenter)}${props.invert ? '  INV' : ''}` : '';
      const tr = this.lock.locked ? 'W/L locked' : '';
      if (ov.tl.textContent !== tl) ov.tl.textContent = tl;
      if (ov.bl.textContent !== bl) ov.bl.textContent = bl;
      if (ov.br.textContent !== br) ov.br.textContent = br;
      if (ov.tr.textContent !== tr) ov.tr.textContent = tr;
    }
  }

  _schedulePrefetch() {
    const ids = this.prefetchIds;
    if (!ids || !ids.length) return;
    const token = this.loadToken;
    setTimeout(() => {
      if (token !== this.loadToken || this.destroyed) return;
      ids.forEach((imageId, i) => {
        if (cache.getImageLoadObject(imageId)) return;
        imageLoadPoolManager.addRequest(
          () => (token === this.loadToken ? imageLoader.loadAndCacheImage(imageId).catch(() => null) : Promise.resolve()),
          CoreEnums.RequestType.Prefetch,
          { imageId },
          10 + i,
        );
      });
    }, 500);
  }

  _removeAnnotations(imageIds) {
    const set = new Set(imageIds);
    const all = csAnnotation.state.getAllAnnotations?.() || [];
    for (const a of all) {
      const ref = a.metadata?.referencedImageId;
      if (!ref || set.has(ref) || this.volumeId) {
        if (a.metadata?.toolName === LengthTool.toolName || a.metadata?.toolName === MarkTool.toolName) {
          csAnnotation.state.removeAnnotation(a.annotationUID);
        }
      }
    }
  }

  /** Forget the marked location (the decision it belonged to is saved). */
  clearMarks() {
    for (const a of csAnnotation.state.getAllAnnotations?.() || []) {
      if (a.metadata?.toolName === MarkTool.toolName) csAnnotation.state.removeAnnotation(a.annotationUID);
    }
    if (this.viewportIds.length) toolUtils.triggerAnnotationRenderForViewportIds(this.viewportIds);
    if (this.tool === 'mark') this.setTool('mark');
  }

  _annotationCompleted(evt) {
    const a = evt.detail?.annotation;
    if (!a || a.metadata?.toolName !== MarkTool.toolName) return;
    const vp = this._activeViewport();
    if (!vp || !this.viewportIds.length) return;
    // Only one mark at a time: drop the earlier ones.
    for (const other of csAnnotation.state.getAllAnnotations?.() || []) {
      if (other.metadata?.toolName === MarkTool.toolName && other.annotationUID !== a.annotationUID) {
        csAnnotation.state.removeAnnotation(other.annotationUID);
      }
    }
    const world = a.data.handles.points[0];
    const detail = locationFor(this, vp, world);
    toolUtils.triggerAnnotationRenderForViewportIds(this.viewportIds);
    this.element.dispatchEvent(new CustomEvent('lightbox:location', { detail }));
    if (typeof this.onLocation === 'function') this.onLocation(detail);
  }
}

function locationFor(ctrl, vp, world) {
  let imageIndex;
  let imageId;
  if (ctrl.mode === 'stack') {
    imageIndex = vp.getCurrentImageIdIndex();
    imageId = vp.getCurrentImageId();
  } else {
    // Nearest acquired slice to the clicked point.
    let best = Infinity;
    ctrl.imageIds.forEach((id, i) => {
      const plane = metaData.get('imagePlaneModule', id);
      if (!plane?.imagePositionPatient || !plane?.imageOrientationPatient) return;
      const n = cross(plane.imageOrientationPatient.slice(0, 3), plane.imageOrientationPatient.slice(3, 6));
      const d = Math.abs(dot(n, sub(world, plane.imagePositionPatient)));
      if (d < best) {
        best = d;
        imageIndex = i;
        imageId = id;
      }
    });
  }
  let column;
  let row;
  try {
    const ij = csUtils.worldToImageCoords(imageId, world);
    if (ij) [column, row] = ij.map((v) => Math.round(v * 100) / 100);
  } catch (e) {
    /* no plane metadata */
  }
  const r = (v) => Math.round(v * 100) / 100;
  return {
    x: r(world[0]),
    y: r(world[1]),
    z: r(world[2]),
    imageIndex,
    imageId,
    column,
    row,
    frame: imageId && hasFrame(imageId) ? Number(imageId.match(/frame=(\d+)$/)[1]) : undefined,
    mode: ctrl.mode,
  };
}

const sub = (a, b) => [a[0] - b[0], a[1] - b[1], a[2] - b[2]];
const dot = (a, b) => a[0] * b[0] + a[1] * b[1] + a[2] * b[2];
const cross = (a, b) => [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]];

/** ≥ 3 single images of one size, all with the same orientation, at distinct positions. */
export function isVolumeStack(imageIds) {
  if (!imageIds || imageIds.length < 3) return false;
  let first = null;
  const positions = new Set();
  for (const id of imageIds) {
    const p = metaData.get('imagePlaneModule', id);
    if (!p || !p.imageOrientationPatient || !p.imagePositionPatient || !p.rows || !p.columns) return false;
    if (!first) first = p;
    if (p.rows !== first.rows || p.columns !== first.columns) return false;
    for (let k = 0; k < 6; k++) {
      if (Math.abs(p.imageOrientationPatient[k] - first.imageOrientationPatient[k]) > 1e-3) return false;
    }
    const n = cross(first.imageOrientationPatient.slice(0, 3), first.imageOrientationPatient.slice(3, 6));
    positions.add(Math.round(dot(n, p.imagePositionPatient) * 1000));
  }
  return positions.size === imageIds.length;
}

function isColor(imageId) {
  const pi = metaData.get('imagePixelModule', imageId)?.photometricInterpretation || '';
  return !!pi && !pi.startsWith('MONOCHROME');
}

function patientName(imageId) {
  if (!imageId) return '';
  const p = metaData.get('patientModule', imageId);
  const name = p?.patientName;
  const str = typeof name === 'string' ? name : name?.Alphabetic || '';
  return [str.replace(/\^/g, ' ').trim(), p?.patientId].filter(Boolean).join('  ');
}

function seriesDescription(imageId) {
  if (!imageId) return '';
  const s = metaData.get('generalSeriesModule', imageId);
  return [s?.modality, s?.seriesDescription].filter(Boolean).join('  ');
}

/**
 * Mount a viewer into `element`.
 * options: {
 *   instances: [{url, frames}]   preferred: one entry per instance file, frames = NumberOfFrames
 *   imageIds: ['wadouri:URL', …] alternative: multi-frame files are expanded after loading
 *   overlay: {patient, series}, onLocation(detail), prefetch: [ids] | {instances},
 *   startIndex: image to open on (the page's preview), cacheSizeMB (512), maxWebWorkers
 * }
 * CR/DX/MG open with the histogram window (auto window/level), other modalities with the header's window.
 */
export function mount(element, options = {}) {
  if (!element) throw new Error('LightboxViewer.mount: element is required');
  if (element.__lightboxViewer) element.__lightboxViewer.destroy();
  const controller = new Controller(element, options);
  element.__lightboxViewer = controller;
  return controller;
}

export { instancesToImageIds as toImageIds };

/** Memory in use: Cornerstone's image cache and the parsed Part-10 files the loader keeps. */
export function cacheInfo() {
  const ds = wadouri.dataSetCacheManager.getInfo();
  return {
    imageCacheBytes: cache.getCacheSize(),
    maxImageCacheBytes: cache.getMaxCacheSize(),
    dataSetBytes: ds.cacheSizeInBytes,
    dataSets: ds.numberOfDataSetsCached,
  };
}

/** Whether an image id is (being) loaded into the cache, e.g. by prefetch. */
export function isCached(imageId) {
  return !!cache.getImageLoadObject(toIdList([imageId])[0]);
}

const api = {
  mount,
  instancesToImageIds,
  frameImageId,
  histogramWindow,
  isVolumeStack,
  cacheInfo,
  isCached,
  PRESETS,
  VERSION,
};
if (typeof window !== 'undefined') window.LightboxViewer = api;
export default api;
