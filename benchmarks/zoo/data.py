"""Realistic inputs made here, without downloads: images, text lines, token ids, speech-like audio.

Every generator takes a numpy `Generator` and a sample count and returns a batch-first array.
The numbers look like what the models see in use (normalized photos with edges and smooth
regions, rendered text, token ids with [CLS] / [SEP] and padding, voiced audio with syllables and
pauses), so calibration ranges and parity errors are those of real inputs, not of uniform noise.
"""

from __future__ import annotations

import numpy as np

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)
SAMPLE_RATE = 16_000


# ---------------------------------------------------------------- images

def scene(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """One synthetic photo, [H, W, 3] uint8: a smooth colour field (sky, ground, lighting), a
    few filled shapes with hard edges, and sensor noise."""
    from PIL import Image, ImageDraw

    coarse = rng.uniform(0, 255, (4, 4, 3)).astype(np.uint8)
    image = Image.fromarray(coarse).resize((width, height), Image.BICUBIC)
    draw = ImageDraw.Draw(image)
    for _ in range(rng.integers(2, 6)):
        x0, y0 = rng.integers(0, width), rng.integers(0, height)
        x1, y1 = x0 + rng.integers(width // 8, width // 2), y0 + rng.integers(height // 8, height // 2)
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)((x0, y0, x1, y1), fill=colour)
    pixels = np.asarray(image, np.float32) + rng.normal(0, 4, (height, width, 3))
    return np.clip(pixels, 0, 255).astype(np.uint8)


def images(rng: np.random.Generator, count: int, height: int, width: int,
           normalize: str = "imagenet") -> np.ndarray:
    """`count` scenes as [N, 3, H, W] float32: `imagenet` (mean/std), `unit` ([0, 1]) or
    `symmetric` ([-1, 1])."""
    batch = np.stack([scene(rng, height, width) for _ in range(count)]).astype(np.float32) / 255.0
    return _normalize(batch, normalize).transpose(0, 3, 1, 2).copy()


def _normalize(batch: np.ndarray, normalize: str) -> np.ndarray:
    if normalize == "imagenet":
        return (batch - IMAGENET_MEAN) / IMAGENET_STD
    if normalize == "symmetric":
        return (batch - 0.5) / 0.5
    if normalize == "unit":
        return batch
    raise ValueError(f"unknown normalization {normalize!r} (imagenet, unit, symmetric)")


# ---------------------------------------------------------------- rendered text

_WORDS = ("edge", "port", "model", "2024", "OCR", "invoice", "total", "12.50", "Berlin", "road",
          "STOP", "exit", "No. 7", "price", "hello", "world", "data", "phone", "ABC123", "tflite")


def text_line(rng: np.random.Generator, height: int, width: int, grey: bool = False) -> np.ndarray:
    """A line of printed words on paper-coloured background, [H, W, 3] (or [H, W]) uint8."""
    from PIL import Image, ImageDraw, ImageFont

    paper = int(rng.integers(200, 256))
    image = Image.new("RGB", (width, height), (paper, paper - int(rng.integers(0, 20)), paper - int(rng.integers(0, 30))))
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=int(height * 0.6))
    words = " ".join(rng.choice(_WORDS, size=int(rng.integers(1, 4))))
    ink = tuple(int(c) for c in rng.integers(0, 80, 3))
    draw.text((int(rng.integers(2, max(3, width // 10))), int(height * 0.15)), words, fill=ink, font=font)
    pixels = np.asarray(image.convert("L") if grey else image, np.float32)
    pixels = pixels + rng.normal(0, 3, pixels.shape)
    return np.clip(pixels, 0, 255).astype(np.uint8)


def text_lines(rng: np.random.Generator, count: int, height: int, width: int,
               normalize: str = "symmetric") -> np.ndarray:
    """Rendered text lines as [N, 3, H, W] float32 (PaddleOCR's rec / cls preprocessing)."""
    batch = np.stack([text_line(rng, height, width) for _ in range(count)]).astype(np.float32) / 255.0
    return _normalize(batch, normalize).transpose(0, 3, 1, 2).copy()


def captchas(rng: np.random.Generator, count: int, height: int, width: int) -> np.ndarray:
    """Grey text images [N, 1, H, W] in [0, 1] with speckle, the input of ddddocr's recognizer."""
    batch = np.stack([text_line(rng, height, width, grey=True) for _ in range(count)]).astype(np.float32) / 255.0
    speckle = rng.random(batch.shape) < 0.01
    return np.where(speckle, 1.0 - batch, batch)[:, None].astype(np.float32)


def documents(rng: np.random.Generator, count: int, height: int, width: int) -> np.ndarray:
    """Pages with several text lines, [N, 3, H, W] ImageNet-normalized (PaddleOCR's detector)."""
    pages = []
    for _ in range(count):
        page = np.full((height, width, 3), 235, np.uint8)
        line = max(16, height // 5)
        for top in range(int(rng.integers(2, line // 2 + 3)), height - line, line + int(rng.integers(2, 8))):
            page[top:top + line] = text_line(rng, line, width)
        pages.append(page)
    batch = np.stack(pages).astype(np.float32) / 255.0
    return _normalize(batch, "imagenet").transpose(0, 3, 1, 2).copy()


# ---------------------------------------------------------------- text tokens

def token_batch(rng: np.random.Generator, count: int, length: int, vocab: int,
                cls: int = 101, sep: int = 102, pad: int = 0) -> dict[str, np.ndarray]:
    """WordPiece-like ids ([CLS] words [SEP] then padding) and the matching attention mask, int64.
    Word ids follow a Zipf law over the vocabulary, as text does."""
    ids = np.full((count, length), pad, np.int64)
    mask = np.zeros((count, length), np.int64)
    first_word = min(1000, vocab // 4)
    for row in range(count):
        used = int(rng.integers(length // 2, length + 1))
        words = first_word + (rng.zipf(1.3, used - 2) - 1) % (vocab - first_word)
        ids[row, :used] = np.concatenate([[cls], words, [sep]])
        mask[row, :used] = 1
    return {"input_ids": ids, "attention_mask": mask}


# ---------------------------------------------------------------- audio

def speech(rng: np.random.Generator, count: int, samples: int) -> np.ndarray:
    """Speech-like audio [N, samples] float32 at 16 kHz: voiced syllables (a glottal pulse train
    with a wandering pitch, shaped by two formant resonances), pauses between them, breath noise."""
    from scipy.signal import lfilter

    t = np.arange(samples) / SAMPLE_RATE
    clips = []
    for _ in range(count):
        pitch = rng.uniform(90, 220) * (1 + 0.1 * np.sin(2 * np.pi * rng.uniform(0.5, 2) * t))
        phase = 2 * np.pi * np.cumsum(pitch) / SAMPLE_RATE
        source = sum(np.sin(k * phase) / k for k in range(1, 25))
        voiced = source
        for formant, bandwidth in ((rng.uniform(300, 900), 80), (rng.uniform(900, 2500), 120)):
            r = np.exp(-np.pi * bandwidth / SAMPLE_RATE)
            theta = 2 * np.pi * formant / SAMPLE_RATE
            voiced = lfilter([1 - r], [1, -2 * r * np.cos(theta), r * r], voiced)
        syllables = np.clip(np.sin(2 * np.pi * rng.uniform(3, 5) * t + rng.uniform(0, np.pi)), 0, None) ** 2
        silence = (t > rng.uniform(0, t[-1] * 0.7)) & (t < rng.uniform(t[-1] * 0.7, t[-1]))
        envelope = np.where(silence, 0.05, 1.0) * syllables
        clip = envelope * voiced / (np.abs(voiced).max() + 1e-9) * rng.uniform(0.2, 0.6)
        clips.append(clip + rng.normal(0, 0.003, samples))
    return np.stack(clips).astype(np.float32)


def mel_filters(bins: int, n_fft: int, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Triangular filters on the mel scale (HTK formula), [bins, n_fft // 2 + 1]."""
    def mel(f):
        return 2595 * np.log10(1 + f / 700)

    def hz(m):
        return 700 * (10 ** (m / 2595) - 1)

    edges = hz(np.linspace(mel(0), mel(sample_rate / 2), bins + 2))
    freqs = np.linspace(0, sample_rate / 2, n_fft // 2 + 1)
    rising = (freqs[None] - edges[:-2, None]) / (edges[1:-1, None] - edges[:-2, None])
    falling = (edges[2:, None] - freqs[None]) / (edges[2:, None] - edges[1:-1, None])
    return np.clip(np.minimum(rising, falling), 0, None).astype(np.float32)


def log_mel(audio: np.ndarray, bins: int, frames: int, n_fft: int = 400, hop: int = 160) -> np.ndarray:
    """Log-mel spectrogram [N, bins, frames] scaled like Whisper's features (about [-1, 1])."""
    window = np.hanning(n_fft + 1)[:-1]
    padded = np.pad(audio, ((0, 0), (n_fft // 2, n_fft // 2 + frames * hop)), mode="reflect")
    starts = np.arange(frames) * hop
    windows = padded[:, starts[:, None] + np.arange(n_fft)] * window
    power = np.abs(np.fft.rfft(windows, axis=-1)) ** 2
    mels = np.log10(np.maximum(power @ mel_filters(bins, n_fft).T, 1e-10)).transpose(0, 2, 1)
    mels = np.maximum(mels, mels.max(axis=(1, 2), keepdims=True) - 8.0)
    return ((mels + 4.0) / 4.0).astype(np.float32)
