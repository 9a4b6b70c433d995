"""`onegc-audit keys init|show`: the Ed25519 key the harness signs its runs with."""

from pathlib import Path
from typing import Annotated

import typer

from onegc.evidence.attest import PUBLIC_NAME, AttestationError, init_keys, key_dir, load_signer, load_verifier

app = typer.Typer(no_args_is_help=True, help="The signing key: make one, show its public half.")

KeyDir = Annotated[Path | None, typer.Option("--dir", help="Key folder; default $ONEGC_KEY_DIR or "
                                                           "~/.config/onegc-audit/keys.")]


@app.command("init")
def init(directory: KeyDir = None, force: Annotated[bool, typer.Option(help="Replace the key.")] = False) -> None:
    """Make a key pair: the private key (0600) signs every run sealed on this machine; share
    the public key with whoever verifies. Never put the key folder inside a runs folder."""
    folder = directory or key_dir()
    public = init_keys(folder, force=force)
    print(f"public key {public}")
    print(f"key id     {load_verifier(public).keyid}")


@app.command("show")
def show(directory: KeyDir = None) -> None:
    """Print the public key (PEM) and its key id."""
    folder = directory or key_dir()
    signer = load_signer(folder)
    if signer is None:
        raise AttestationError(f"no signing key in {folder}", hint="onegc-audit keys init")
    public = folder / PUBLIC_NAME
    print(public.read_text(), end="")
    print(f"key id {signer.keyid}  ({public})")
