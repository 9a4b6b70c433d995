"""`onegc-audit keys init|show`: the Ed25519 key the harness signs its runs with."""

import json
from pathlib import Path
from typing import Annotated

import typer

from onegc.evidence.attest import PUBLIC_NAME, AttestationError, init_keys, key_dir, load_signer, load_verifier

app = typer.Typer(no_args_is_help=True, help="The signing key: make one, show its public half.")

KeyDir = Annotated[Path | None, typer.Option("--dir", help="Key folder; default $ONEGC_KEY_DIR or "
                                                           "~/.config/onegc-audit/keys.")]
AsJson = Annotated[bool, typer.Option("--json", help="Print the key's path and id as JSON.")]


@app.command("init")
def init(
    directory: KeyDir = None,
    force: Annotated[bool, typer.Option(help="Replace the key.")] = False,
    as_json: AsJson = False,
) -> None:
    """Make a key pair: the private key (0600) signs every run sealed on this machine; share
    the public key with whoever verifies. Never put the key folder inside a runs folder."""
    folder = directory or key_dir()
    public = init_keys(folder, force=force)
    keyid = load_verifier(public).keyid
    if as_json:
        print(json.dumps({"public_key": str(public), "keyid": keyid}))
        return
    print(f"public key {public}")
    print(f"key id     {keyid}")


@app.command("show")
def show(directory: KeyDir = None, as_json: AsJson = False) -> None:
    """Print the public key (PEM) and its key id."""
    folder = directory or key_dir()
    signer = load_signer(folder)
    if signer is None:
        raise AttestationError(f"no signing key in {folder}", hint="onegc-audit keys init")
    public = folder / PUBLIC_NAME
    if as_json:
        print(json.dumps({"public_key": str(public), "keyid": signer.keyid, "pem": public.read_text()}))
        return
    print(public.read_text(), end="")
    print(f"key id {signer.keyid}  ({public})")
