# Builds a launch's python_env virtualenv (once per content; later launches
# reuse it), then becomes the training: `mlflow run --env-manager virtualenv`
# without a shell. Slipway runs it as `python -c <this> SPEC ARGV...`, where
# SPEC is JSON: env_dir, python, build_dependencies, dependencies.
import fcntl
import json
import os
import shutil
import subprocess
import sys
import venv

spec = json.loads(sys.argv[1])
argv = sys.argv[2:]
env_dir = spec["env_dir"]
wanted = spec.get("python")
here = "%d.%d" % sys.version_info[:2]
if wanted and not (wanted == here or wanted.startswith(here + ".")):
    print(f"slipway: python_env asks for Python {wanted}; this machine runs {sys.version.split()[0]}, "
          "and Slipway does not install other Pythons (mlflow run would, with pyenv).", flush=True)
    sys.exit(2)

os.makedirs(os.path.dirname(env_dir), exist_ok=True)
with open(env_dir + ".lock", "w") as lock:
    # Launches of the same environment wait for one build.
    fcntl.flock(lock, fcntl.LOCK_EX)
    ready = os.path.join(env_dir, ".slipway-ready")
    if os.path.exists(ready):
        print(f"slipway: using the environment {env_dir}", flush=True)
    else:
        print(f"slipway: building the environment {env_dir}", flush=True)
        shutil.rmtree(env_dir, ignore_errors=True)
        venv.create(env_dir, with_pip=True)
        pip = [os.path.join(env_dir, "bin", "python"), "-m", "pip", "install", "--disable-pip-version-check"]
        for packages in (spec["build_dependencies"], spec["dependencies"]):
            if packages:
                subprocess.run(pip + packages, check=True)
        open(ready, "w").close()

bin_dir = os.path.join(env_dir, "bin")
env = dict(os.environ, VIRTUAL_ENV=env_dir, PATH=bin_dir + os.pathsep + os.environ.get("PATH", ""))
env.pop("PYTHONHOME", None)
program = shutil.which(argv[0], path=env["PATH"]) or argv[0]
sys.stdout.flush()
os.execve(program, argv, env)
