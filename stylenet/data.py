"""Content photos for training: any nested folder of jpg/png/webp, unreadable files skipped."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image
from torchvision.transforms.v2 import functional as TF

from .images import open_image

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp"}


class NoImagesError(ValueError):
    """A content folder holds no readable photo."""


def list_images(folder: Path, recursive: bool = True) -> list[Path]:
    """Image files under ``folder`` by suffix (case-insensitive), sorted for reproducibility."""
    pattern = "**/*" if recursive else "*"
    return sorted(p for p in Path(folder).glob(pattern) if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def load_rgb(path: Path) -> Image.Image:
    """Through the one safe loader (allowed raster formats only, decoded fully so truncated files fail
    here, not mid-training, EXIF-rotated); alpha is dropped. Raises ``ImageError`` (a ValueError)."""
    return open_image(path)[0]


@dataclass
class ContentPhotos:
    """Readable photos of a folder, decoded once at ``size`` (short side) and kept in memory as
    uint8: a few hundred MB for thousands of photos, and no decoding in the training loop."""

    images: list[torch.Tensor]
    skipped: list[Path]

    @classmethod
    def scan(cls, folder: Path, size: int, on_progress: Callable[[int, int], None] | None = None) -> ContentPhotos:
        """Decode every photo under ``folder``; ``on_progress(done, total)`` after each (reading
        1,682 photos takes tens of seconds on two cores, worth showing)."""
        folder = Path(folder)
        if not folder.is_dir():
            raise NoImagesError(f"content folder {folder} does not exist")
        paths = list_images(folder)
        images, skipped = [], []
        for done, path in enumerate(paths, 1):
            try:
                img = load_rgb(path)
            except (OSError, ValueError):  # ImageError is a ValueError
                skipped.append(path)
            else:
                images.append(TF.pil_to_tensor(TF.resize(img, size, antialias=True)))
            if on_progress:
                on_progress(done, len(paths))
        if not images:
            raise NoImagesError(f"no readable jpg/png/webp photo in {folder} ({len(skipped)} unreadable)")
        return cls(images, skipped)

    def split(self, count: int, size: int) -> tuple[ContentPhotos, torch.Tensor | None]:
        """Hold ``count`` photos out of training (at most a tenth of them, spread evenly over the sorted
        folder, so the choice is the same on every run): the photos left to train on, and the held-out
        ones as ``size`` x ``size`` centre crops in [0, 1] (None when none are held out)."""
        count = min(count, len(self.images) // 10)
        if count <= 0:
            return self, None
        held = {round(i * len(self.images) / count) for i in range(count)}
        crops = [TF.center_crop(img, [size, size]) for i, img in enumerate(self.images) if i in held]
        rest = [img for i, img in enumerate(self.images) if i not in held]
        return ContentPhotos(rest, self.skipped), torch.stack(crops).float().div_(255.0)

    def batch(self, batch_size: int, size: int, generator: torch.Generator) -> torch.Tensor:
        """A random batch of ``size`` x ``size`` crops with random flips, drawn from ``generator``
        alone so that a resumed run sees exactly the batches an uninterrupted one would."""
        idx = torch.randint(len(self.images), (batch_size,), generator=generator)
        crops = []
        for i in idx.tolist():
            img = self.images[i]
            h, w = img.shape[-2:]
            top = int(torch.randint(h - size + 1, (1,), generator=generator))
            left = int(torch.randint(w - size + 1, (1,), generator=generator))
            crop = img[:, top:top + size, left:left + size]
            if torch.rand((), generator=generator) < 0.5:
                crop = crop.flip(-1)
            crops.append(crop)
        return torch.stack(crops).float().div_(255.0)
