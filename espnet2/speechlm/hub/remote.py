"""Upload/download packed models and tokenized datasets with huggingface_hub.

A local folder is always used as is; only a repo id reaches the Hub. Tokens come
from the environment (HF_TOKEN) or ``huggingface-cli login`` via huggingface_hub
itself: this module never takes, stores or logs one.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Optional

from espnet2.speechlm.hub.pack import read_meta

DATASET_INDEX = "data.json"


def _looks_like_path(ref: str) -> bool:
    return ref.startswith((".", "/", "~")) or ref.count("/") > 1 or os.sep != "/" and os.sep in ref


def _hub_unreachable_message(repo_id: str, repo_type: str, err: Exception) -> str:
    return (
        f"could not get {repo_type} {repo_id!r} from the Hugging Face Hub and it is not in the local cache "
        f"({type(err).__name__}). If you are offline, download it on a machine with network "
        f"(`python -m espnet2.bin.speechlm_hub download {repo_id} --out_dir DIR`) and pass that local folder instead."
    )


def upload_folder(local_dir: Path, repo_id: str, repo_type: str = "model", private: bool = False, commit_message: Optional[str] = None) -> str:
    """Create the repo if needed and upload the whole folder; returns the commit URL/oid text."""
    import huggingface_hub

    folder = Path(local_dir)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is not a folder")
    api = huggingface_hub.HfApi()
    api.create_repo(repo_id=repo_id, repo_type=repo_type, private=private, exist_ok=True)
    logging.info("uploading %s to %s (%s)", folder, repo_id, repo_type)
    info = api.upload_folder(
        repo_id=repo_id, repo_type=repo_type, folder_path=str(folder),
        commit_message=commit_message or f"Upload {folder.name} with espnet2.bin.speechlm_hub",
    )
    return str(getattr(info, "commit_url", info))


def download(
    repo_id_or_local_dir: str, repo_type: str = "model", revision: Optional[str] = None,
    out_dir: Optional[Path] = None, cache_dir: Optional[Path] = None, local_files_only: bool = False,
) -> Path:
    """Return a local folder: the path itself if it exists, else a Hub snapshot."""
    ref = str(repo_id_or_local_dir)
    local = Path(ref).expanduser()
    if local.is_dir():
        return local
    if _looks_like_path(ref) or local.exists():
        raise FileNotFoundError(f"{ref} looks like a local path but is not an existing folder")

    import huggingface_hub
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    try:
        path = huggingface_hub.snapshot_download(
            repo_id=ref, repo_type=repo_type, revision=revision,
            local_dir=str(out_dir) if out_dir else None,
            cache_dir=str(cache_dir) if cache_dir else None,
            local_files_only=local_files_only,
        )
    except LocalEntryNotFoundError as e:
        raise RuntimeError(_hub_unreachable_message(ref, repo_type, e)) from e
    except HfHubHTTPError as e:  # reached the Hub, but it said no
        raise RuntimeError(
            f"the Hugging Face Hub refused {repo_type} {ref!r} ({type(e).__name__}); check the repo id, "
            "revision and your login (HF_TOKEN or `huggingface-cli login`), or pass a local folder."
        ) from e
    except (ConnectionError, TimeoutError, OSError) as e:
        raise RuntimeError(_hub_unreachable_message(ref, repo_type, e)) from e
    except Exception as e:  # httpx/requests connection errors do not share a base class
        if "connect" in type(e).__name__.lower() or "timeout" in type(e).__name__.lower():
            raise RuntimeError(_hub_unreachable_message(ref, repo_type, e)) from e
        raise
    return Path(path)


def download_model(repo_id_or_local_dir: str, **kwargs) -> Path:
    """Like :func:`download`, then check the folder is a packed model."""
    folder = download(repo_id_or_local_dir, repo_type="model", **kwargs)
    read_meta(folder)
    return folder


def check_dataset_dir(folder: Path) -> Path:
    folder = Path(folder)
    from espnet2.speechlm.hub.dataset import COLLECTION_INDEX

    if not ((folder / DATASET_INDEX).is_file() or (folder / COLLECTION_INDEX).is_file()):
        raise FileNotFoundError(f"{folder} is not a tokenized dataset dir (no {DATASET_INDEX} or {COLLECTION_INDEX})")
    return folder


def upload_dataset(local_dir: Path, repo_id: str, private: bool = False, commit_message: Optional[str] = None) -> str:
    return upload_folder(check_dataset_dir(local_dir), repo_id, repo_type="dataset", private=private, commit_message=commit_message)


def download_dataset(repo_id_or_local_dir: str, **kwargs) -> Path:
    return check_dataset_dir(download(repo_id_or_local_dir, repo_type="dataset", **kwargs))
