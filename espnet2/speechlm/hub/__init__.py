"""Sharing models and tokenized datasets: pack into a self-describing folder,
upload to / download from the Hugging Face Hub (local folders work offline)."""

from espnet2.speechlm.hub.pack import pack_model, pack_model_dir, read_meta
from espnet2.speechlm.hub.remote import (
    download,
    download_dataset,
    download_model,
    upload_dataset,
    upload_folder,
)

__all__ = [
    "pack_model", "pack_model_dir", "read_meta", "upload_folder", "download", "download_model",
    "upload_dataset", "download_dataset",
]
