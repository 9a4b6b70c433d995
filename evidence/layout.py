"""A run folder's layout, spelled out once: every module that reads or writes a run's files
takes the names from here (RUNS_DIR/LABEL/TASK/rREP/...)."""

import re
from dataclasses import dataclass
from pathlib import Path

WORKSPACE = "workspace"
"""The agent's working directory: the task's files and its training/validation data."""
SCRATCH = "scratch"
"""The agent's HOME and its private /tmp, /var/tmp, /dev/shm."""
HOME = "home"
PRIVATE_SCRATCH = {"/tmp": "tmp", "/var/tmp": "var_tmp", "/dev/shm": "dev_shm"}
"""Path in the agent's view -> folder under scratch/ bound there."""
FS_DIR = "fs"
"""While a run lives: the images of its own filesystems (harness/runfs.py); gone after it."""
AGENT_DIR = "agent"
STDOUT = "agent/stdout.log"
STDERR = "agent/stderr.log"
LAUNCH = "agent/launch.json"
"""The launcher's configuration, the agent's view included."""
JOURNAL_DIR = "journal"
DB_NAME = "evidence.duckdb"
MANIFEST_NAME = "manifest.json"
RESULT_NAME = "result.json"
RESCORE_DIR = "rescore"
CHECKPOINTS = "checkpoints"
"""Under the workspace: where the agent saves the checkpoints that are scored."""
FROZEN_DIR = "frozen"
"""Root-only copies of the candidates and sources taken at the end-of-run freeze (harness/freeze.py):
FROZEN_DIR/checkpoints/..., FROZEN_DIR/sources/..., FROZEN_DIR/frozen.json."""
FROZEN_SOURCES = "sources"


@dataclass(frozen=True)
class RunLayout:
    """The paths of one run folder."""

    root: Path

    @property
    def identity(self) -> tuple[str, str, int | None]:
        """(label, task, rep) as RUNS/LABEL/TASK/rREP names them (rep None if the last is not rN)."""
        parts = self.root.resolve().parts
        rep = int(parts[-1][1:]) if re.fullmatch(r"r\d+", parts[-1]) else None
        return parts[-3], parts[-2], rep

    @property
    def workspace(self) -> Path:
        return self.root / WORKSPACE

    @property
    def scratch(self) -> Path:
        return self.root / SCRATCH

    @property
    def home(self) -> Path:
        return self.scratch / HOME

    def private(self, view_path: str) -> Path:
        """The scratch folder bound at ``view_path`` (/tmp, /var/tmp, /dev/shm) in the agent's view."""
        return self.scratch / PRIVATE_SCRATCH[view_path]

    @property
    def frozen(self) -> Path:
        return self.root / FROZEN_DIR

    @property
    def fs_dir(self) -> Path:
        return self.root / FS_DIR

    @property
    def agent_dir(self) -> Path:
        return self.root / AGENT_DIR

    @property
    def stdout(self) -> Path:
        return self.root / STDOUT

    @property
    def stderr(self) -> Path:
        return self.root / STDERR

    @property
    def launch(self) -> Path:
        return self.root / LAUNCH

    def journal(self, table: str) -> Path:
        return self.root / JOURNAL_DIR / f"{table}.jsonl"

    @property
    def db(self) -> Path:
        return self.root / DB_NAME

    @property
    def manifest(self) -> Path:
        return self.root / MANIFEST_NAME

    @property
    def result(self) -> Path:
        return self.root / RESULT_NAME

    @property
    def checkpoints(self) -> Path:
        return self.workspace / CHECKPOINTS
