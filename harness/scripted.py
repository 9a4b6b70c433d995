"""Built-in scripted agents: real actions (write files, run commands, say things), their
events printed as Claude Code style stream-json, so demos and tests exercise the same
record a real agent CLI leaves.

Usage (inside the harness): python -m onegc.harness.scripted NAME [ARGS...]
"""

import json
import shutil
import subprocess
import sys
import uuid
from collections.abc import Callable


def emit(event: dict) -> None:
    print(json.dumps(event), flush=True)


def say(text: str) -> None:
    emit(
        {
            "type": "assistant",
            "message": {
                "id": f"msg_{uuid.uuid4().hex[:12]}",
                "role": "assistant",
                "content": [{"type": "text", "text": text}],
            },
        }
    )


def bash(command: str) -> int:
    """Run a shell command as a Bash tool call and report its result."""
    call_id = f"toolu_{uuid.uuid4().hex[:12]}"
    emit(
        {
            "type": "assistant",
            "message": {
                "id": f"msg_{uuid.uuid4().hex[:12]}",
                "role": "assistant",
                "content": [
                    {"type": "tool_use", "id": call_id, "name": "Bash", "input": {"command": command}}
                ],
            },
        }
    )
    proc = subprocess.run(["bash", "-c", command], capture_output=True, text=True, check=False)
    sys.stderr.write(proc.stderr)
    emit(
        {
            "type": "user",
            "message": {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": call_id,
                        "content": (proc.stdout + proc.stderr)[-4000:],
                        "is_error": proc.returncode != 0,
                    }
                ],
            },
        }
    )
    return proc.returncode


def baseline(_: list[str]) -> int:
    """Copy train.py to run_1.py and train it: the paper's baseline behaviour."""
    emit({"type": "system", "subtype": "init", "session_id": str(uuid.uuid4()), "model": "scripted"})
    say("I will read program.md, copy train.py to run_1.py and train the baseline.")
    shutil.copyfile("train.py", "run_1.py")
    code = bash("python run_1.py")
    say("Training finished." if code == 0 else f"Training failed with exit code {code}.")
    emit({"type": "result", "subtype": "success", "is_error": code != 0, "num_turns": 3})
    return code


SCRIPTS: dict[str, Callable[[list[str]], int]] = {"baseline": baseline}


def main() -> None:
    sys.exit(SCRIPTS[sys.argv[1]](sys.argv[2:]))


if __name__ == "__main__":
    main()
