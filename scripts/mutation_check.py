"""Plant known maths bugs one at a time and check that the tests written to catch them fail.

Run this before closing any change to the maths (training targets, samplers, MCMC, the U-Net's output conversion,
composition): `python scripts/mutation_check.py`. Each bug below once passed the whole suite; a mutation that
survives means its test no longer sees it. Each mutation is an exact textual replacement in a copy of
src/video_adapter that must match exactly once, so the script fails loudly when the code it mutates changes
(update the mutation then, don't drop it). Exit status 1 if any mutation survives or no longer applies.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "video_adapter"
TESTS = "tests/test_maths_by_hand.py"

# (name, file in the package, original text, mutated text, tests that must fail)
MUTATIONS = [
    # the one v target of training and the held-out loss
    ("v target with flipped sign", "maths/schedule.py",
     "alpha * eps - sigma * x0", "alpha * eps + sigma * x0",
     ["test_denoising_loss_regresses_v_by_hand", "test_heldout_loss_regresses_v_by_hand"]),
    ("default MCMC step size sigma instead of sigma^2", "maths/mcmc.py",
     "self.cfg.step_size * sigma**2", "self.cfg.step_size * sigma",
     ["test_default_langevin_step_is_step_size_times_sigma_squared"]),
    # One per sampler: each calls the corrector on its own line.
    ("ddpm corrector at the level before the step", "maths/sampling.py",
     "sigma_next * _randn_like(x, generator)\n        x = _correct(corrector, x, logsnr_next,",
     "sigma_next * _randn_like(x, generator)\n        x = _correct(corrector, x, logsnr,",
     ["test_corrector_runs_at_each_level_reached[ddpm]"]),
    ("ddim corrector at the level before the step", "maths/sampling.py",
     "x = x + std * _randn_like(x, generator)\n        x = _correct(corrector, x, logsnr_next,",
     "x = x + std * _randn_like(x, generator)\n        x = _correct(corrector, x, logsnr,",
     ["test_corrector_runs_at_each_level_reached[ddim]"]),
    ("dpmpp-2m corrector at the level before the step", "maths/sampling.py",
     "* denoised\n        x = _correct(corrector, x, logsnr_next,",
     "* denoised\n        x = _correct(corrector, x, logsnr,",
     ["test_corrector_runs_at_each_level_reached[dpmpp-2m]"]),
    ("heun corrector at the level before the step", "maths/sampling.py",
     "_correct(corrector, alpha_next * x, logsnr_next,", "_correct(corrector, alpha_next * x, logsnr,",
     ["test_corrector_runs_at_each_level_reached[heun]", "test_heun_corrects_vp_x"]),
    ("heun corrector on EDM x instead of VP x", "maths/sampling.py",
     "x = _correct(corrector, alpha_next * x, logsnr_next, cond, generator) / alpha_next",
     "x = _correct(corrector, x, logsnr_next, cond, generator)",
     ["test_heun_corrects_vp_x"]),
    ("U-Net v -> eps with the sign of v flipped", "models/unet.py",
     "return eps_from_v(x, out, logsnr)", "return eps_from_v(x, -out, logsnr)",
     ["test_unet_eps_is_sigma_x_plus_alpha_v"]),
    ("eps_from_v with alpha and sigma swapped", "maths/schedule.py",
     "    return sigma * x + alpha * v\n", "    return alpha * x + sigma * v\n",
     ["test_unet_eps_is_sigma_x_plus_alpha_v"]),
    # Routing: a model handed the other model's cond.
    ("composed expert gets the base model's cond", "maths/composition.py",
     'expert_role = "prior" if base_role == "small" else "small"', "expert_role = base_role",
     ["test_each_model_gets_its_own_cond"]),
    ("cfg-mix prior gets the small model's cond", "maths/composition.py",
     "prior_cfg(x, logsnr, cond.prior), w)", "prior_cfg(x, logsnr, cond.small), w)",
     ["test_each_model_gets_its_own_cond"]),
    ("prior-only gets the small model's cond", "maths/composition.py",
     "return lambda x, logsnr, cond: prior_cfg(x, logsnr, cond.prior)",
     "return lambda x, logsnr, cond: prior_cfg(x, logsnr, cond.small)",
     ["test_each_model_gets_its_own_cond"]),
    ("adapter-only gets the prior's cond", "maths/composition.py",
     "return lambda x, logsnr, cond: small_cfg(x, logsnr, cond.small)",
     "return lambda x, logsnr, cond: small_cfg(x, logsnr, cond.prior)",
     ["test_each_model_gets_its_own_cond"]),
]


def pytest_run(pythonpath: Path, tests: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(pythonpath), os.environ.get("PYTHONPATH", "")]),
           "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider",
                           *(f"{TESTS}::{t}" for t in tests)],
                          cwd=ROOT, env=env, capture_output=True, text=True, check=False)


def main() -> int:
    failures = 0
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "video_adapter"
        # The unmutated copy must pass, and must be the package the tests import (the venv's install is editable).
        shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
        probe = subprocess.run([sys.executable, "-c", "import video_adapter; print(video_adapter.__file__)"],
                               env={**os.environ, "PYTHONPATH": tmp}, capture_output=True, text=True, check=False)
        if not probe.stdout.strip().startswith(tmp):
            print(f"the copy is not what gets imported: {probe.stdout.strip() or probe.stderr.strip()}")
            return 1
        every = sorted({t for *_, tests in MUTATIONS for t in tests})
        baseline = pytest_run(Path(tmp), every)
        if baseline.returncode != 0:
            print("the tests fail without any mutation:\n" + baseline.stdout[-3000:])
            return 1
        for name, file, original, mutated, tests in MUTATIONS:
            target = copy / file
            source = (PACKAGE / file).read_text()
            found = source.count(original)
            if found != 1:
                print(f"BROKEN    {name}: its text occurs {found} times in {file}, expected once; update the mutation")
                failures += 1
                continue
            target.write_text(source.replace(original, mutated))
            try:
                result = pytest_run(Path(tmp), tests)
            finally:
                target.write_text(source)
                shutil.rmtree(target.parent / "__pycache__", ignore_errors=True)  # no stale mutated bytecode
            if result.returncode == 1:  # 1: tests failed; anything else (collection error, crash) is no verdict
                print(f"caught    {name}")
            else:
                print(f"SURVIVED  {name} (pytest exit {result.returncode}): {', '.join(tests)}")
                failures += 1
    print(f"{len(MUTATIONS) - failures}/{len(MUTATIONS)} mutations caught")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
