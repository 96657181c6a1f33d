// Flamenco job type (Flamenco 3.3+): swap one shot in chunks of frames, then assemble the movie.
// The same job as swap_shot.openjd.yaml beside this file, task for task and argument for
// argument (tests/test_farm.py compares the two): each chunk runs `python -m core swap` for its
// frames (warming its smoothing on the frames before it, so chunks join without a seam), and the
// last task runs `python -m core encode` once every chunk has finished.
//
// Install: copy this file into the `scripts` folder beside the flamenco-manager executable
// (Flamenco 3.7+ picks it up without a restart), and define a manager variable `deepfake_python`
// (flamenco-manager.yaml, per platform) that names the core environment's interpreter on the
// workers, or type the interpreter into the job's "Core Python" setting.

const JOB_TYPE = {
  label: "Deepfake Face Swap",
  description: "Swap the trained face in a shot, in chunks of frames, then assemble the movie",
  settings: [
    { key: "source", type: "string", subtype: "file_path", required: true, description: "The source movie (or a folder of frames)" },
    { key: "model", type: "string", subtype: "dir_path", required: true, description: "The trained model folder" },
    { key: "output", type: "string", subtype: "dir_path", required: true, description: "The frame folder every chunk writes into" },
    { key: "movie", type: "string", subtype: "file_path", required: true, description: "The assembled movie (.mp4)" },
    { key: "frame_start", type: "int32", default: 0, required: true, description: "First frame of the shot (source frames, from 0)" },
    { key: "frame_end", type: "int32", required: true, description: "Last frame of the shot, inclusive" },
    { key: "chunk_size", type: "int32", default: 50, propargs: { min: 1 }, description: "Frames per task" },
    { key: "aligner", type: "string", choices: ["auto", "fan", "dlib"], default: "auto" },
    { key: "device", type: "string", choices: ["auto", "cpu", "cuda"], default: "auto" },
    { key: "color", type: "string", choices: ["none", "mean-std", "histogram", "seamless"], default: "mean-std" },
    { key: "colorspace", type: "string", default: "sRGB", description: "The source's colourspace" },
    { key: "yuv", type: "string", choices: ["accurate", "fast"], default: "accurate" },
    { key: "ocio_config", type: "string", subtype: "file_path", default: "", description: "An OCIO config the workers can read (empty: the core's own)" },
    { key: "existing", type: "string", choices: ["refuse", "replace"], default: "refuse", description: "When the frame folder holds another swap" },
    { key: "core_python", type: "string", default: "{deepfake_python}", description: "The core environment's interpreter on the workers" },
  ],
};

function integer(settings, key, fallback) {
  const value = settings[key] === undefined || settings[key] === null || settings[key] === "" ? fallback : settings[key];
  const n = Number(value);
  if (!Number.isInteger(n)) throw `setting ${key} must be a whole number, not ${value}`;
  return n;
}

function compileJob(job) {
  const s = job.settings;
  for (const key of ["source", "model", "output", "movie"]) {
    if (!s[key]) throw `setting ${key} is required`;
  }
  const start = integer(s, "frame_start", 0);
  const end = integer(s, "frame_end", undefined);
  const size = integer(s, "chunk_size", 50);
  if (start < 0 || end < start) throw `the shot's frames ${start}..${end} are not a range`;
  if (size < 1) throw "chunk_size must be at least 1";
  const python = s.core_python || "{deepfake_python}";
  const aligner = s.aligner || "auto";
  const device = s.device || "auto";
  const color = s.color || "mean-std";
  const colorspace = s.colorspace || "sRGB";
  const yuv = s.yuv || "accurate";
  const ocio = s.ocio_config || "";
  const existing = s.existing || "refuse";

  const swaps = [];
  for (let first = start; first <= end; first += size) {
    const last = Math.min(first + size - 1, end);
    const task = author.Task(`swap-${first}-${last}`, "misc");
    task.addCommand(author.Command("exec", {
      exe: python,
      args: ["-m", "core", "swap", s.source, "--model", s.model, "--out", s.output,
             "--start", String(first), "--count", String(size), "--end", String(end),
             "--format", "png", "--aligner", aligner, "--device", device,
             "--color", color, "--colorspace", colorspace, "--yuv", yuv, "--ocio-config", ocio, "--existing", existing],
    }));
    job.addTask(task);
    swaps.push(task);
  }
  const assemble = author.Task("assemble", "misc");
  assemble.addCommand(author.Command("exec", {
    exe: python,
    args: ["-m", "core", "encode", s.output, "--out", s.movie, "--start", String(start), "--end", String(end)],
  }));
  for (const task of swaps) assemble.addDependency(task);
  job.addTask(assemble);
}
