// The vqpress viewer page: one or two scenes rendered by Spark, side by side, one camera for both.
//
// Camera: the page's camera is a pinhole camera given as vqpress gives it (world-to-camera `viewmat`
// in OpenCV axes, intrinsics `K` in pixels). three.js looks down -z with y up, so the view matrix is
// diag(1, -1, -1) times the OpenCV one, and the projection matrix is built from K directly
// (fx, fy, cx, cy, not a field of view), so the splat shader's focal length (P[0][0] * width / 2)
// is fx exactly. Splats are drawn with 3DGS's classic settings, the ones vqpress's renderer uses:
// a 0.3 px^2 low-pass on every 2D covariance without opacity compensation, 3 sigma extent,
// alpha below 1/255 dropped, back-to-front by view depth.
//
// When every view has drawn the scene sorted for the current camera, the page resolves
// `window.vqpressDrawn` (a promise) and sets its title to "vqpress view: drawn". Scripts driving
// the page (the tests) also get `window.vqpressSettled()`, a promise of the next such moment (after
// the camera moved), and `window.vqpressCamera()`, the current camera in vqpress's convention.

import * as THREE from "three";
import { OrbitControls } from "three/addons/controls/OrbitControls.js";
import { SparkRenderer, SplatMesh } from "@sparkjsdev/spark";

const NEAR = 0.01; // vqpress's near plane (world units)
const FAR = 1e4;
const DEFAULT_FOV_DEG = 50; // the orbit views' field of view, on the narrower side

let markDrawn;
let markFailed;
window.vqpressDrawn = new Promise((resolve, reject) => {
  markDrawn = resolve;
  markFailed = reject;
});

function fail(message) {
  document.getElementById("error").textContent = message;
  document.title = "vqpress view: error";
  console.error(message);
  markFailed(new Error(message));
}

function formatBytes(n) {
  if (n >= 1e6) return `${(n / 1e6).toFixed(2)} MB`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(1)} kB`;
  return `${n} B`;
}

// A camera's projection from pinhole intrinsics: pixel u = fx x / z + cx (OpenCV), NDC y up.
function setIntrinsics(camera, K, width, height) {
  const [fx, , cx, , fy, cy] = K;
  const P = new THREE.Matrix4().set(
    (2 * fx) / width, 0, 1 - (2 * cx) / width, 0,
    0, (2 * fy) / height, (2 * cy) / height - 1, 0,
    0, 0, -(FAR + NEAR) / (FAR - NEAR), (-2 * FAR * NEAR) / (FAR - NEAR),
    0, 0, -1, 0,
  );
  camera.projectionMatrix.copy(P);
  camera.projectionMatrixInverse.copy(P).invert();
  // Keep this projection whatever calls updateProjectionMatrix (controls, resizes).
  camera.updateProjectionMatrix = () => {
    camera.projectionMatrix.copy(P);
    camera.projectionMatrixInverse.copy(P).invert();
  };
}

// Place the camera from an OpenCV world-to-camera matrix (16 numbers, row-major).
function setViewmat(camera, viewmat) {
  const cv = new THREE.Matrix4().set(...viewmat);
  const flip = new THREE.Matrix4().makeScale(1, -1, -1);
  const world = flip.multiply(cv).invert(); // camera-to-world, three.js axes
  const position = new THREE.Vector3();
  const quaternion = new THREE.Quaternion();
  const scale = new THREE.Vector3();
  world.decompose(position, quaternion, scale);
  camera.position.copy(position);
  camera.quaternion.copy(quaternion);
  camera.up.set(0, 1, 0).applyQuaternion(quaternion); // the image's up, so orbiting keeps the roll
  camera.updateMatrixWorld(true);
}

// The current camera as vqpress takes it: OpenCV world-to-camera `viewmat` (16, row-major), `K` (9).
function cameraJson(camera, K, width, height) {
  const flip = new THREE.Matrix4().makeScale(1, -1, -1);
  const cv = flip.multiply(camera.matrixWorld.clone().invert());
  return { viewmat: cv.clone().transpose().elements.slice(), K: K.slice(), width, height };
}

// OpenCV look-at (as vqpress's orbit views): a camera at eye looking at target, `up` up in the image.
function lookAtViewmat(eye, target, up) {
  const f = target.clone().sub(eye).normalize();
  let right = f.clone().cross(up);
  if (right.length() < 1e-9) right = f.clone().cross(new THREE.Vector3(0, 1, 0));
  right.normalize();
  const down = f.clone().cross(right);
  const R = [right, down, f];
  const t = R.map((r) => -r.dot(eye));
  return [
    right.x, right.y, right.z, t[0],
    down.x, down.y, down.z, t[1],
    f.x, f.y, f.z, t[2],
    0, 0, 0, 1,
  ];
}

async function main() {
  const cfg = await (await fetch("/api/config")).json();
  const width = cfg.width;
  const height = cfg.height;
  const background = new THREE.Color().setRGB(...cfg.background, THREE.SRGBColorSpace);
  const views = document.getElementById("views");

  const camera = new THREE.PerspectiveCamera(DEFAULT_FOV_DEG, width / height, NEAR, FAR);
  const entries = cfg.scenes.map((scene, i) => {
    const box = document.createElement("div");
    box.className = "view";
    const label = document.createElement("div");
    label.className = "label";
    const what = scene.decoded_from ? ` (decoded from .${scene.decoded_from} in this viewer)` : "";
    label.innerHTML = `<b></b> ${formatBytes(scene.bytes)} on disk${what}`;
    label.querySelector("b").textContent = scene.name;
    const renderer = new THREE.WebGLRenderer({ antialias: false, alpha: false });
    renderer.setPixelRatio(1);
    renderer.setSize(width, height);
    renderer.setClearColor(background, 1);
    renderer.domElement.id = `view${i}`;
    box.append(label, renderer.domElement);
    views.append(box);
    const spark = new SparkRenderer({
      renderer,
      preBlurAmount: 0.3, // 3DGS's eps2d, added to the 2D covariance ...
      blurAmount: 0, // ... without Spark's opacity compensation
      maxStdDev: 3,
      minAlpha: 1 / 255,
      sortRadial: false, // sort by view depth, as 3DGS does
      enableLod: false,
      accumExtSplats: true,
    });
    const sceneObj = new THREE.Scene();
    sceneObj.add(spark);
    const mesh = new SplatMesh({ url: scene.url, extSplats: true });
    sceneObj.add(mesh);
    return { renderer, spark, scene: sceneObj, mesh };
  });

  try {
    await Promise.all(entries.map((e) => e.mesh.initialized));
  } catch (err) {
    fail(`the renderer could not load a scene: ${err}`);
    return;
  }

  // The first camera: the one given, else the first orbit view of vqpress (z up, 25 degrees up).
  const bbox = entries[0].mesh.getBoundingBox();
  const center = bbox.getCenter(new THREE.Vector3());
  let K;
  let viewmat;
  if (cfg.camera) {
    K = cfg.camera.K;
    viewmat = cfg.camera.viewmat;
  } else {
    const focal = (0.5 * Math.min(width, height)) / Math.tan((DEFAULT_FOV_DEG * Math.PI) / 360);
    K = [focal, 0, width / 2, 0, focal, height / 2, 0, 0, 1];
    const radius = Math.max(0.5 * bbox.getSize(new THREE.Vector3()).length(), 1e-6);
    const distance = (1.1 * radius) / Math.sin((DEFAULT_FOV_DEG * Math.PI) / 360);
    const el = (25 * Math.PI) / 180;
    const eye = center.clone().add(new THREE.Vector3(Math.cos(el), 0, Math.sin(el)).multiplyScalar(distance));
    viewmat = lookAtViewmat(eye, center, new THREE.Vector3(0, 0, 1));
  }
  // One camera for every view: dragging in any of them moves all of them. The controls are made
  // first (their constructor turns the camera to its target), the camera placed after; they orbit
  // around the point of the viewing axis nearest the scene's center.
  const controls = new OrbitControls(camera, views);
  controls.enableDamping = false;
  setIntrinsics(camera, K, width, height);
  setViewmat(camera, viewmat);
  const forward = camera.getWorldDirection(new THREE.Vector3());
  const depth = Math.max(center.clone().sub(camera.position).dot(forward), 1e-3);
  controls.target.copy(camera.position).addScaledVector(forward, depth);
  let moved = false;
  controls.addEventListener("change", () => {
    moved = true;
  });

  const info = [];
  if (cfg.scenes.length === 2) {
    const [a, b] = cfg.scenes;
    const ratio = a.bytes / b.bytes;
    info.push(`${b.name} is ${ratio.toFixed(2)}x smaller than ${a.name} on disk.`);
    if (cfg.psnr) {
      info.push(`PSNR ${cfg.psnr.db.toFixed(2)} dB (${cfg.psnr.source}).`);
    } else {
      info.push(
        "PSNR not known: pass --psnr with --camera (both scenes rendered by the vqpress service), " +
          "or keep the compressed file's <stem>.report.json beside it.",
      );
    }
  }
  info.push("Drag to orbit, right-drag to pan, wheel to zoom: both views follow.");
  document.getElementById("info").textContent = info.join(" ");

  // Settled = every view rendered frames with the order sorted for the camera they are drawn from.
  let settledFrames = 0;
  let drawn = false;
  let waiters = [];
  window.vqpressCamera = () => cameraJson(camera, K, width, height);
  window.vqpressSettled = () =>
    new Promise((resolve) => {
      waiters.push(resolve);
    });
  function sorted(e) {
    const s = e.spark;
    return !s.sorting && !s.sortDirty && s.activeSplats > 0 && s.orderingTexture !== null;
  }
  // Frames are drawn while the first one settles, then only when the camera moved or a sort
  // finished (an idle page costs no CPU: with a software WebGL that matters).
  let lastPose = null;
  function frame() {
    camera.updateMatrixWorld(true);
    const pose = camera.matrixWorld.elements.join(",");
    const still = pose === lastPose;
    const busy = entries.some((e) => e.spark.dirty || e.spark.sorting || e.spark.sortDirty);
    if (!drawn || !still || busy || waiters.length) {
      for (const e of entries) e.renderer.render(e.scene, camera);
      lastPose = pose;
    }
    settledFrames = still && entries.every(sorted) ? settledFrames + 1 : 0;
    if (settledFrames >= 3) {
      if (!drawn) {
        drawn = true;
        document.title = "vqpress view: drawn";
        // A camera moved before the first frame settled is not the one asked for: say nothing then.
        if (!moved) markDrawn({ width, height, views: entries.map((e) => e.renderer.domElement.id) });
      }
      for (const resolve of waiters) resolve(window.vqpressCamera());
      waiters = [];
    }
    requestAnimationFrame(frame);
  }
  requestAnimationFrame(frame);
}

main().catch((err) => fail(`viewer error: ${err && err.stack ? err.stack : err}`));
