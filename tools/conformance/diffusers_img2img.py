#!/usr/bin/env python3
"""Expected values for the img2img conformance cases (src/cli/conformance-cases.ts), by running diffusers' own code.

    /usr/bin/python3 tools/conformance/diffusers_img2img.py <diffusers> [--self-check-only] [--ts <file.ts>]

<diffusers> is a clone of huggingface/diffusers: a work tree, or a bare git directory (read at HEAD with git show).
Prints one JSON object: diffusers' version and commit, and one entry per case with the timesteps diffusers' pipeline
code produced, the index it set with set_begin_index, and sum(|x|) / mean(|x|) of the final sample. With --ts, writes
them as the TypeScript cases instead (src/cli/conformance-img2img-cases.ts is that file).

Needs torch (1.13 works), numpy and scipy (LMS integrates its coefficients with scipy). It never runs in CI and no
diffusers code is committed: what runs is read from <diffusers> at run time.

What is diffusers' own code here, and what is this file's:
  * The schedulers: diffusers' src/diffusers/schedulers/scheduling_*.py, executed unchanged. They import plumbing
    that pulls in the Hub client and half the package (ConfigMixin, register_to_config, BaseOutput, logging,
    deprecate, randn_tensor, SchedulerMixin); `install_plumbing` below provides small stand-ins for those, none of
    which touches the math: the config decorator records the init arguments with their defaults as diffusers'
    does, randn_tensor draws torch.randn on the CPU generator it is given.
  * The img2img steps: StableDiffusionImg2ImgPipeline's get_timesteps, prepare_latents, prepare_extra_step_kwargs,
    the module's retrieve_latents, and the `latent_timestep = ...` line of its __call__, cut out of
    pipelines/stable_diffusion/pipeline_stable_diffusion_img2img.py with `ast` and executed on a stand-in `self`
    whose VAE encodes to the picture itself (scaling factor 1) and whose randn_tensor is the case's fixed noise.
  * The dummy sample, noise and model: diffusers' SchedulerCommonTest.dummy_sample_deter, dummy_noise_deter and
    dummy_model (tests/schedulers/test_schedulers.py), cut out the same way.
  * The scheduler configs: each test file's get_scheduler_config().
  * The loop after the start: the tests' full-loop protocol (scale_model_input, model, step; the scaled sample is
    what step receives), the protocol of src/cli/conformance-loop.ts.

Before the img2img cases run, each scheduler test file's test_full_loop_no_noise and test_full_loop_with_noise are
executed unchanged against the stand-ins; their own asserts check that the plumbing did not change the math.
"""

import ast
import dataclasses
import datetime
import enum
import inspect
import json
import logging
import os
import subprocess
import sys
import textwrap
import types

import torch

# (our scheduler name, diffusers module, class, test file, test class)
SCHEDULERS = [
    ("ddim", "scheduling_ddim", "DDIMScheduler", "test_scheduler_ddim.py", "DDIMSchedulerTest"),
    ("euler", "scheduling_euler_discrete", "EulerDiscreteScheduler", "test_scheduler_euler.py", "EulerDiscreteSchedulerTest"),
    (
        "euler_a",
        "scheduling_euler_ancestral_discrete",
        "EulerAncestralDiscreteScheduler",
        "test_scheduler_euler_ancestral.py",
        "EulerAncestralDiscreteSchedulerTest",
    ),
    ("heun", "scheduling_heun_discrete", "HeunDiscreteScheduler", "test_scheduler_heun.py", "HeunDiscreteSchedulerTest"),
    ("lms", "scheduling_lms_discrete", "LMSDiscreteScheduler", "test_scheduler_lms.py", "LMSDiscreteSchedulerTest"),
    (
        "dpmpp_2m",
        "scheduling_dpmsolver_multistep",
        "DPMSolverMultistepScheduler",
        "test_scheduler_dpm_multi.py",
        "DPMSolverMultistepSchedulerTest",
    ),
    ("pndm", "scheduling_pndm", "PNDMScheduler", "test_scheduler_pndm.py", "PNDMSchedulerTest"),
]

# Strengths: round ones, and ones whose steps × strength lands just below an integer in float64 (0.29 × 100 =
# 28.999999999999996, 0.57 × 100 = 56.99999999999999) or on a half (0.75 × 10 = 7.5), where int() differs from
# rounding. 0.2 of 10 steps is the tests' t_start = 8.
CASES = [(10, s) for s in (0.2, 0.3, 0.5, 0.75, 1.0)] + [(7, 0.29), (25, 0.57), (100, 0.29), (100, 0.57)]

# The embedded model's own scheduler_config.json (models/imagine-shapes/scheduler/), run through DDIM and Euler too.
PRODUCT_CONFIG_CASES = [(10, 0.75), (25, 0.57), (50, 0.3)]


class Source:
    """Files of a diffusers clone: a work tree, or a bare git directory read at HEAD."""

    def __init__(self, path):
        self.path = path
        self.bare = not os.path.isdir(os.path.join(path, "src", "diffusers"))

    def git(self, *args):
        where = ["--git-dir", self.path] if self.bare else ["-C", self.path]
        return subprocess.run(["git", *where, *args], check=True, capture_output=True, text=True).stdout

    def read(self, relpath):
        if self.bare:
            return self.git("show", f"HEAD:{relpath}")
        with open(os.path.join(self.path, relpath), encoding="utf-8") as f:
            return f.read()

    def version(self):
        init = self.read("src/diffusers/__init__.py")
        line = next(line for line in init.splitlines() if line.startswith("__version__"))
        return ast.literal_eval(line.split("=", 1)[1].strip())

    def commit(self):
        return self.git("rev-parse", "HEAD").strip()


def install_plumbing():
    """Stand-ins for the modules the schedulers import, registered under their diffusers names."""

    def module(name, package=False):
        m = types.ModuleType(name)
        if package:
            m.__path__ = []
        sys.modules[name] = m
        return m

    module("diffusers", package=True)
    module("diffusers.schedulers", package=True)

    class FrozenDict(dict):
        """diffusers' config: a dict whose keys read as attributes too."""

        def __getattr__(self, name):
            try:
                return self[name]
            except KeyError as e:
                raise AttributeError(name) from e

    class ConfigMixin:
        config_name = "scheduler_config.json"

        def register_to_config(self, **kwargs):
            merged = dict(getattr(self, "_internal_dict", {}))
            merged.update(kwargs)
            self._internal_dict = FrozenDict(merged)

        @property
        def config(self):
            return self._internal_dict

    def register_to_config(init):
        """Record every init argument, given or defaulted, in self.config before init runs (as diffusers' does)."""

        def inner(self, *args, **kwargs):
            init_kwargs = {k: v for k, v in kwargs.items() if not k.startswith("_")}
            params = list(inspect.signature(init).parameters.items())[1:]
            recorded = {name: arg for arg, (name, _) in zip(args, params)}
            for name, p in params:
                if name not in recorded:
                    recorded[name] = init_kwargs.get(name, p.default)
            self.register_to_config(**recorded)
            init(self, *args, **init_kwargs)

        inner.__wrapped__ = init
        inner.__signature__ = inspect.signature(init)
        return inner

    cu = module("diffusers.configuration_utils")
    cu.ConfigMixin, cu.register_to_config, cu.FrozenDict = ConfigMixin, register_to_config, FrozenDict

    class BaseOutput:
        """Outputs are read by attribute here."""

    def deprecate(*args, take_from=None, standard_warn=True, stacklevel=2):
        # Only the take_from form returns values: the deprecated keyword arguments, popped.
        if take_from is None:
            return None
        values = tuple(take_from.pop(a[0]) if a[0] in take_from else None for a in args if isinstance(a, tuple))
        return values[0] if len(values) == 1 else (values or None)

    def is_scipy_available():
        try:
            import scipy  # noqa: F401
        except ImportError:
            return False
        return True

    utils = module("diffusers.utils", package=True)
    utils.BaseOutput, utils.deprecate, utils.is_scipy_available = BaseOutput, deprecate, is_scipy_available
    utils.logging = types.SimpleNamespace(get_logger=logging.getLogger)

    def randn_tensor(shape, generator=None, device=None, dtype=None, layout=None):
        """CPU only: one torch.randn of the whole shape from the one generator (diffusers' path for that case)."""
        if isinstance(generator, list):
            raise ValueError("one generator expected")
        return torch.randn(shape, generator=generator, dtype=dtype, layout=layout or torch.strided)

    tu = module("diffusers.utils.torch_utils")
    tu.randn_tensor = randn_tensor

    class SchedulerMixin:
        config_name = "scheduler_config.json"
        _compatibles = []

    @dataclasses.dataclass
    class SchedulerOutput(BaseOutput):
        prev_sample: torch.Tensor

    su = module("diffusers.schedulers.scheduling_utils")
    su.SchedulerMixin, su.SchedulerOutput = SchedulerMixin, SchedulerOutput
    su.KarrasDiffusionSchedulers = enum.Enum("KarrasDiffusionSchedulers", ["DDIMScheduler"])


def load_scheduler_module(src, name):
    """Execute diffusers' scheduler file as diffusers.schedulers.<name>."""
    relpath = f"src/diffusers/schedulers/{name}.py"
    m = types.ModuleType(f"diffusers.schedulers.{name}")
    m.__package__ = "diffusers.schedulers"
    m.__file__ = relpath
    sys.modules[m.__name__] = m
    exec(compile(src.read(relpath), relpath, "exec"), m.__dict__)
    return m


def cut(text, path, names, cls=None):
    """Source text of functions `names` (methods of `cls` if given) in a file, dedented, by ast."""
    tree = ast.parse(text)
    body = tree.body
    if cls is not None:
        body = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == cls).body
    found = {n.name: n for n in body if isinstance(n, ast.FunctionDef)}
    missing = [n for n in names if n not in found]
    if missing:
        raise SystemExit(f"{path}: no {', '.join(missing)} in {cls or 'module'}")
    return {n: textwrap.dedent(ast.get_source_segment(text, found[n])) for n in names}


def define(sources, env):
    """Execute function sources in `env`, decorators such as @property dropped, and return the functions."""
    out = {}
    for name, text in sources.items():
        lines = [line for line in text.splitlines() if not line.lstrip().startswith("@")]
        exec(compile("\n".join(lines), f"<diffusers {name}>", "exec"), env)
        out[name] = env[name]
    return out


def pipeline_code(src):
    """get_timesteps, prepare_latents, prepare_extra_step_kwargs and the latent_timestep line of __call__."""
    path = "src/diffusers/pipelines/stable_diffusion/pipeline_stable_diffusion_img2img.py"
    text = src.read(path)
    cls = "StableDiffusionImg2ImgPipeline"
    methods = cut(text, path, ["get_timesteps", "prepare_latents", "prepare_extra_step_kwargs"], cls)
    module_fns = cut(text, path, ["retrieve_latents"])
    call = next(
        n
        for c in ast.parse(text).body
        if isinstance(c, ast.ClassDef) and c.name == cls
        for n in c.body
        if isinstance(n, ast.FunctionDef) and n.name == "__call__"
    )
    assign = next(
        n
        for n in ast.walk(call)
        if isinstance(n, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "latent_timestep" for t in n.targets)
    )
    latent_timestep_line = ast.get_source_segment(text, assign)
    return methods, module_fns, latent_timestep_line


def test_helpers(src):
    """SchedulerCommonTest's dummy_sample_deter, dummy_noise_deter and dummy_model."""
    path = "tests/schedulers/test_schedulers.py"
    return cut(src.read(path), path, ["dummy_sample_deter", "dummy_noise_deter", "dummy_model"], "SchedulerCommonTest")


def fake_test_self(src, test_file, test_class, scheduler_cls, helpers):
    """A stand-in for a test instance: the test class's attributes and methods, and the common dummies."""
    path = f"tests/schedulers/{test_file}"
    text = src.read(path)
    tree = ast.parse(text)
    cls_node = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == test_class)
    env = {"torch": torch, "torch_device": "cpu", scheduler_cls.__name__: scheduler_cls}
    attrs = {}
    for n in cls_node.body:
        if isinstance(n, ast.Assign) and len(n.targets) == 1 and isinstance(n.targets[0], ast.Name):
            try:
                attrs[n.targets[0].id] = eval(compile(ast.Expression(n.value), path, "eval"), env)
            except NameError:
                pass  # a class attribute naming something not loaded here (another scheduler class)
    methods = {n.name for n in cls_node.body if isinstance(n, ast.FunctionDef)}
    fns = define(cut(text, path, sorted(methods), test_class), env)
    dummies = define(helpers, dict(env))
    obj = types.SimpleNamespace(**attrs)
    for name, fn in fns.items():
        setattr(obj, name, types.MethodType(fn, obj))
    obj.dummy_sample_deter = dummies["dummy_sample_deter"](obj)
    obj.dummy_noise_deter = dummies["dummy_noise_deter"](obj)
    obj.dummy_model = types.MethodType(dummies["dummy_model"], obj)
    obj.num_inference_steps = attrs.get("num_inference_steps", 10)
    return obj


def self_check(obj, label):
    """Run the test file's own full-loop tests, their asserts unchanged."""
    ran = []
    for name in ("test_full_loop_no_noise", "test_full_loop_with_noise"):
        if hasattr(obj, name):
            getattr(obj, name)()
            ran.append(name)
    print(f"self-check {label}: {', '.join(ran)} pass", file=sys.stderr)


class IdentityVae:
    """A VAE whose encoding of a picture is the picture: the cases noise dummy_sample_deter itself."""

    config = types.SimpleNamespace(scaling_factor=1.0)

    @staticmethod
    def encode(image):
        return types.SimpleNamespace(latents=image)


def run_img2img(scheduler_cls, config, steps, strength, pipe_code, test_obj):
    methods, module_fns, latent_timestep_line = pipe_code
    noise = test_obj.dummy_noise_deter
    env = {
        "torch": torch,
        "inspect": inspect,
        "PIL": types.SimpleNamespace(Image=types.SimpleNamespace(Image=type("Image", (), {}))),
        "deprecate": sys.modules["diffusers.utils"].deprecate,
        # The one thing changed in the pipeline's code: its noise draw is the tests' fixed noise.
        "randn_tensor": lambda shape, generator=None, device=None, dtype=None: noise.to(dtype),
    }
    define(module_fns, env)
    fns = define(methods, env)

    # from_config's way with a scheduler_config.json: keys the class does not take are left out.
    accepted = inspect.signature(scheduler_cls.__init__).parameters
    scheduler = scheduler_cls(**{k: v for k, v in config.items() if k in accepted})
    pipe = types.SimpleNamespace(scheduler=scheduler, vae=IdentityVae())
    for name, fn in fns.items():
        setattr(pipe, name, types.MethodType(fn, pipe))

    generator = torch.manual_seed(0)
    scheduler.set_timesteps(steps, device="cpu")  # retrieve_timesteps without custom timesteps
    timesteps, loop_steps = pipe.get_timesteps(steps, strength, "cpu")
    local = {"timesteps": timesteps, "batch_size": 4, "num_images_per_prompt": 1}
    exec(latent_timestep_line, env, local)
    image, latent_timestep = test_obj.dummy_sample_deter, local["latent_timestep"]
    latents = pipe.prepare_latents(image, latent_timestep, 4, 1, torch.float32, "cpu", generator)
    extra = pipe.prepare_extra_step_kwargs(generator, 0.0)

    model = test_obj.dummy_model()
    sample = latents
    for t in timesteps:
        sample = scheduler.scale_model_input(sample, t)
        model_output = model(sample, t)
        sample = scheduler.step(model_output, t, sample, **extra).prev_sample
    return {
        "timesteps": [float(t) for t in timesteps],
        "beginIndex": getattr(scheduler, "begin_index", None),
        "loopSteps": int(loop_steps),
        "sum": torch.sum(torch.abs(sample)).item(),
        "mean": torch.mean(torch.abs(sample)).item(),
    }


# A case whose sample grew by orders of magnitude (PNDM's warm-up started mid-schedule, at 100 steps) is left out of
# the TypeScript cases: float32 round-off grows with it (1e-4 relative and more), so its value tests the rounding.
MAX_MEAN = 100.0


def js(value):
    """A JSON-like value as a TypeScript literal in the repo's style (single quotes, integral floats as integers)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k}: {js(v)}" for k, v in value.items()) + " }"
    raise TypeError(type(value))


def wrapped(values, indent, width=118):
    """Numbers as an array literal, wrapped at `width`."""
    rows, row = [], ""
    for v in values:
        item = js(v) + ","
        if row and len(indent) + 2 + len(row) + 1 + len(item) > width:
            rows.append(row)
            row = item
        else:
            row = f"{row} {item}" if row else item
    rows.append(row)
    if len(rows) == 1:
        return "[" + rows[0].rstrip(",") + "]"
    return "[\n" + "\n".join(f"{indent}  {r}" for r in rows) + f"\n{indent}]"


def typescript(out, tool, date):
    """src/cli/conformance-img2img-cases.ts: the cases as ConformanceCase literals, one config constant each."""
    configs = {}
    lines = []
    for c in out["cases"]:
        if c["mean"] > MAX_MEAN:
            what = f"{c['scheduler']} steps {c['steps']} strength {c['strength']}"
            print(f"left out: {what} (mean {c['mean']:.6g})", file=sys.stderr)
            continue
        name = f"{c['scheduler'].upper()}_{'TEST' if c['configFrom'] == 'test' else 'IMAGINE_SHAPES'}"
        configs[name] = (c["configFrom"], c["config"])
        head = (
            f"  img2img({js(c['class'])}, '{c['scheduler']}', {name}, {c['steps']}, {js(c['strength'])}, "
            f"{js(c['sum'])}, {js(c['mean'])}, "
        )
        one_line = "[" + ", ".join(js(t) for t in c["timesteps"]) + "]),"
        if len(head) + len(one_line) <= 120:
            lines.append(head + one_line)
        else:
            listed = wrapped(c["timesteps"], "  ")
            if not listed.startswith("[\n"):  # fits one row of its own: still under the call, not after it
                listed = "[\n    " + listed[1:-1] + ",\n  ]"
            lines.append(head.rstrip() + " " + listed + "),")
    consts = []
    for name, (origin, config) in configs.items():
        where = "the test file's get_scheduler_config()"
        if origin != "test":
            where = "models/imagine-shapes/scheduler/scheduler_config.json"
        consts.append(f"// {where}\nconst {name}: SchedulerConfig = {js(config)};")
    header = f"""// Generated by {tool} on {date} from diffusers {out['diffusers']}
// ({out['commit']}); run the tool again rather than edit.
// Each case is diffusers' StableDiffusionImg2ImgPipeline code (get_timesteps with set_begin_index, prepare_latents'
// add_noise at timesteps[:1]) run on diffusers' scheduler with the tests' dummy sample, noise and model; `timesteps`
// is what diffusers' get_timesteps returned. Left out: cases whose mean(|x|) grew past {MAX_MEAN:g} (see the tool).
import type {{ SchedulerConfig }} from '../diffusion/schedulers/types.js';
import type {{ SchedulerName }} from '../diffusion/types.js';
import type {{ ConformanceCase }} from './conformance-cases.js';
"""
    helper = f"""
/**
 * One case: diffusers' scheduler class and ours, the config, steps, strength, diffusers' sum(|x|) and mean(|x|) of
 * the final sample, and the timesteps its get_timesteps returned.
 */
function img2img(
  schedulerClass: string,
  scheduler: SchedulerName,
  config: SchedulerConfig,
  steps: number,
  strength: number,
  sum: number,
  mean: number,
  timesteps: number[],
): ConformanceCase {{
  const source = `diffusers {out['diffusers']} {out['commit']}, ${{schedulerClass}}, strength ${{strength}}, steps ${{steps}}, run by {tool} on {date}`;
  return {{ source, scheduler, config, steps, strength, sum, mean, timesteps }};
}}
"""
    body = "\n".join(consts) + "\n" + helper
    body += "\n/** img2img starts checked against diffusers' pipeline code (see the header). */\n"
    body += "export const IMG2IMG_CASES: readonly ConformanceCase[] = [\n" + "\n".join(lines) + "\n];\n"
    return header + "\n" + body


def jsonable(config):
    return {k: v for k, v in config.items() if not (isinstance(v, float) and v in (float("inf"), float("-inf")))}


def main(argv):
    if len(argv) < 1 or argv[0].startswith("-"):
        raise SystemExit(__doc__)
    src = Source(argv[0])
    install_plumbing()
    pipe_code = pipeline_code(src)
    helpers = test_helpers(src)
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    product_path = os.path.join(repo, "models", "imagine-shapes", "scheduler", "scheduler_config.json")
    with open(product_path, encoding="utf-8") as f:
        product_config = {k: v for k, v in json.load(f).items() if not k.startswith("_")}

    out = {"diffusers": src.version(), "commit": src.commit(), "cases": []}
    for ours, module_name, class_name, test_file, test_class in SCHEDULERS:
        scheduler_cls = getattr(load_scheduler_module(src, module_name), class_name)
        obj = fake_test_self(src, test_file, test_class, scheduler_cls, helpers)
        self_check(obj, ours)
        if "--self-check-only" in argv:
            continue
        runs = [("test", obj.get_scheduler_config(), steps, strength) for steps, strength in CASES]
        if ours in ("ddim", "euler"):
            runs += [("imagine-shapes", product_config, steps, strength) for steps, strength in PRODUCT_CONFIG_CASES]
        for config_name, config, steps, strength in runs:
            result = run_img2img(scheduler_cls, config, steps, strength, pipe_code, obj)
            out["cases"].append(
                {
                    "scheduler": ours,
                    "class": class_name,
                    "configFrom": config_name,
                    "config": jsonable(config),
                    "steps": steps,
                    "strength": strength,
                    **result,
                }
            )
    if "--ts" in argv:
        path = argv[argv.index("--ts") + 1]
        date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")
        with open(path, "w", encoding="utf-8") as f:
            f.write(typescript(out, "tools/conformance/diffusers_img2img.py", date))
    else:
        json.dump(out, sys.stdout, indent=1)
        print()


if __name__ == "__main__":
    main(sys.argv[1:])
