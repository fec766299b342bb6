"""Image input and image processors against transformers' own load_image and slow image processors.

No model is needed: every processor config below is built both ways and the pixel values compared
exactly, on generated images of varied content, modes and sizes.
"""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
import torch
import transformers
from PIL import Image
from transformers.image_utils import load_image as hf_load_image

from edgetf.errors import BundleError, InvalidInputError
from edgetf.vision import interpolate, load_image, make_processor
from edgetf.vision.image import MAX_RESIZE_PIXELS, image_from_array
from edgetf.vision.samples import gradient, noise, shapes


def mode_images() -> dict[str, Image.Image]:
    """The same picture in every mode the processors must convert to RGB."""
    base = shapes(96, 72)
    rgba = base.copy()
    rgba.putalpha(gradient(96, 72).convert("L"))
    wide = (np.asarray(base.convert("L"), dtype=np.uint16) * 257).astype(np.uint16)
    return {
        "RGB": base,
        "L": base.convert("L"),
        "LA": rgba.convert("LA"),
        "P": base.convert("P", palette=Image.Palette.ADAPTIVE, colors=64),
        "PA": rgba.convert("PA"),
        "RGBA": rgba,
        "CMYK": base.convert("CMYK"),
        "I;16": Image.fromarray(wide),
        "I": base.convert("I"),
        "F": base.convert("F"),
        "1": base.convert("1"),
        "YCbCr": base.convert("YCbCr"),
    }


def sample_images() -> dict[str, Image.Image]:
    return {
        "shapes 320x240": shapes(320, 240),
        "gradient 64x64": gradient(64, 64),
        "noise 123x77": noise(123, 77, seed=3),
        "tall 50x210": shapes(50, 210),
        "tiny 8x8": noise(8, 8, seed=4),
        "large 2000x1500": shapes(2000, 1500),
    }


def encode(image: Image.Image, fmt: str) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt)
    return buf.getvalue()


# -- loading ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", list(mode_images()))
def test_every_mode_converts_like_transformers(mode):
    image = mode_images()[mode]
    assert image.mode == mode
    ours, ref = load_image(image), hf_load_image(image)
    assert ours.mode == "RGB" and np.array_equal(np.asarray(ours), np.asarray(ref))


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP", "BMP", "TIFF", "GIF"])
def test_file_path_bytes_and_base64_load_like_transformers(tmp_path, fmt):
    image = shapes(80, 60)
    data = encode(image, fmt)
    path = tmp_path / f"image.{fmt.lower()}"
    path.write_bytes(data)
    expected = np.asarray(hf_load_image(str(path)))
    b64 = base64.b64encode(data).decode()
    for source in (str(path), path, data, bytearray(data), b64, f"data:image/{fmt.lower()};base64,{b64}"):
        assert np.array_equal(np.asarray(load_image(source)), expected), type(source)


def test_exif_orientation_is_applied(tmp_path):
    image = shapes(80, 40)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise
    path = tmp_path / "rotated.jpg"
    image.save(path, exif=exif)
    ours, ref = load_image(str(path)), hf_load_image(str(path))
    assert ours.size == (40, 80) and np.array_equal(np.asarray(ours), np.asarray(ref))


def test_numpy_arrays_are_taken_as_pil_fromarray_would():
    rgb = np.asarray(noise(30, 20, seed=5))
    gray = rgb[..., 0]
    assert np.array_equal(np.asarray(load_image(rgb)), rgb)
    assert np.array_equal(np.asarray(load_image(gray)), np.asarray(Image.fromarray(gray).convert("RGB")))
    assert np.array_equal(np.asarray(load_image(gray[..., None])), np.asarray(load_image(gray)))
    # floats in [0, 1] are scaled as transformers' to_pil_image does; integral floats and ints as 0..255
    floats = rgb.astype(np.float32) / 255
    expected = (floats.astype(np.float64) * 255).astype(np.float32).astype(np.uint8)
    assert np.array_equal(np.asarray(load_image(floats)), expected)
    assert np.array_equal(np.asarray(load_image(rgb.astype(np.int64))), rgb)
    assert np.array_equal(np.asarray(load_image(rgb.astype(np.float64))), rgb)
    # the caller's array is not modified
    before = floats.copy()
    load_image(floats)
    assert np.array_equal(before, floats)


@pytest.mark.parametrize(
    "bad,match",
    [
        (np.zeros((10, 10, 4), np.uint8), "4 channels"),
        (np.zeros((3, 40, 50), np.uint8), "channels-first"),
        (np.full((8, 8, 3), 1.5, np.float32), r"\[0, 1\]"),
        (np.full((8, 8, 3), -0.25, np.float64), r"\[0, 1\]"),
        (np.full((8, 8, 3), 300, np.int32), r"\[0, 255\]"),
        (np.full((8, 8, 3), np.nan, np.float32), "NaN"),
        (np.zeros((0, 5, 3), np.uint8), "empty"),
        (np.zeros((5, 5, 3), np.complex64), "dtype"),
        (np.zeros((2, 2, 2, 3), np.uint8), "shape"),
        (Image.new("RGB", (0, 0)), "empty"),
        (Image.new("RGB", (0, 10)), "empty"),
        (12345, "int"),
        (None, "NoneType"),
        ("https://example.com/cat.png", "URL"),
        ("/no/such/file.png", "not an existing file"),
        (b"definitely not an image", "not a readable image"),
        (b"", "not a readable image"),
    ],
    ids=lambda v: v if isinstance(v, str) else type(v).__name__,
)
def test_bad_inputs_raise_clear_errors(bad, match):
    with pytest.raises(InvalidInputError, match=match):
        load_image(bad)


def test_truncated_and_corrupt_files_raise_clear_errors(tmp_path):
    data = encode(noise(64, 64), "PNG")
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(InvalidInputError, match="not a readable image"):
        load_image(str(truncated))
    jpeg = encode(noise(64, 64), "JPEG")
    with pytest.raises(InvalidInputError, match="not a readable image"):
        load_image(jpeg[: len(jpeg) // 3])
    corrupt = bytearray(data)
    corrupt[40:60] = b"\x00" * 20  # breaks a chunk checksum
    with pytest.raises(InvalidInputError, match="not a readable image"):
        load_image(bytes(corrupt))
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    with pytest.raises(InvalidInputError, match="not a readable image"):
        load_image(empty)


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height pixels, with (almost) no pixel data."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00")) + chunk(b"IEND", b"")


def test_decompression_bombs_are_refused_before_decoding():
    # 40000 x 40000 pixels would be 4.8 GB of RGB: PIL's bomb check refuses it from the header alone
    with pytest.raises(InvalidInputError, match="DecompressionBomb"):
        load_image(png_header_only(40000, 40000))


def test_errors_are_value_errors_and_name_the_input():
    with pytest.raises(ValueError, match="picture"):
        image_from_array(np.zeros((4, 4, 4), np.uint8), what="picture")


# -- processors ------------------------------------------------------------------------------------

PROCESSOR_CONFIGS = {
    "vit": ("ViTImageProcessor", {"size": {"height": 32, "width": 32}}),
    "vit legacy int size, bicubic": ("ViTImageProcessor", {"size": 40, "resample": 3}),
    "vit no normalize, lanczos": (
        "ViTImageProcessor",
        {"size": {"height": 24, "width": 36}, "do_normalize": False, "resample": 1},
    ),
    "vit no rescale": (
        "ViTImageProcessor",
        {
            "size": {"height": 16, "width": 16},
            "do_rescale": False,
            "image_mean": [120, 110, 100],
            "image_std": [60, 60, 60],
        },
    ),
    "convnext crop": (
        "ConvNextImageProcessor",
        {
            "size": {"shortest_edge": 64},
            "crop_pct": 0.875,
            "resample": 3,
            "image_mean": [0.485, 0.456, 0.406],
            "image_std": [0.229, 0.224, 0.225],
        },
    ),
    "convnext legacy int size": ("ConvNextImageProcessor", {"size": 48, "resample": 2}),
    "convnext >= 384 no crop": ("ConvNextImageProcessor", {"size": {"shortest_edge": 384}, "resample": 3}),
    "detr": ("DetrImageProcessor", {"size": {"shortest_edge": 64, "longest_edge": 96}}),
    "detr legacy size + max_size": ("DetrImageProcessor", {"size": 50, "max_size": 80}),
    "detr max height/width": ("DetrImageProcessor", {"size": {"max_height": 70, "max_width": 90}}),
    "detr exact size": ("DetrImageProcessor", {"size": {"height": 48, "width": 64}, "resample": 0}),
    "mask2former": ("Mask2FormerImageProcessor", {"size": {"height": 64, "width": 64}, "size_divisor": 32}),
    "mask2former legacy int size": ("Mask2FormerImageProcessor", {"size": 48, "max_size": 100, "size_divisor": 32}),
    "glpn": ("GLPNImageProcessor", {"size_divisor": 32}),
    "glpn divisor 16, bicubic": ("GLPNImageProcessor", {"size_divisor": 16, "resample": 3}),
}


def reference_processor(name: str, kwargs: dict):
    return getattr(transformers, name).from_dict(dict(kwargs))


def saved_config(name: str, kwargs: dict) -> dict:
    """The preprocessor_config.json transformers writes for this processor (what a bundle holds)."""
    return reference_processor(name, kwargs).to_dict() | {"image_processor_type": name}


@pytest.mark.parametrize("key", list(PROCESSOR_CONFIGS))
def test_pixel_values_identical_to_the_slow_processors(key):
    name, kwargs = PROCESSOR_CONFIGS[key]
    ref = reference_processor(name, kwargs)
    for config in (saved_config(name, kwargs), {"image_processor_type": name, **kwargs}):  # saved and hand-written
        ours = make_processor(config)
        for label, image in sample_images().items():
            width, height = image.size
            if name == "GLPNImageProcessor" and min(width, height) < ours.size_divisor:
                with pytest.raises(InvalidInputError, match="minimum"):
                    ours([image])
                continue
            if key.startswith("convnext") and "large" in label:
                continue  # covered below at a reasonable cost
            expected = ref(images=[image], return_tensors="np")
            got = ours([load_image(image)])
            assert got["pixel_values"].dtype == np.float32
            assert got["pixel_values"].shape == expected["pixel_values"].shape, label
            assert np.array_equal(got["pixel_values"], expected["pixel_values"]), (key, label)
            if "pixel_mask" in expected:
                assert np.array_equal(got["pixel_mask"], expected["pixel_mask"]), (key, label)
            assert ours.output_size(height, width) == got["pixel_values"].shape[-2:]


def test_convnext_large_image():
    name, kwargs = PROCESSOR_CONFIGS["convnext crop"]
    image = shapes(2000, 1500)
    expected = reference_processor(name, kwargs)(images=[image], return_tensors="np")["pixel_values"]
    assert np.array_equal(make_processor(saved_config(name, kwargs))([image])["pixel_values"], expected)


@pytest.mark.parametrize("key", ["detr", "mask2former legacy int size"])
def test_padded_batches_and_pixel_masks_identical(key):
    name, kwargs = PROCESSOR_CONFIGS[key]
    images = [shapes(120, 90), noise(40, 70, seed=6), gradient(64, 64)]
    expected = reference_processor(name, kwargs)(images=images, return_tensors="np")
    got = make_processor(saved_config(name, kwargs))(images)
    assert np.array_equal(got["pixel_values"], expected["pixel_values"])
    assert np.array_equal(got["pixel_mask"], expected["pixel_mask"])
    assert got["pixel_mask"].dtype == np.int64 and got["pixel_mask"].min() == 0


def test_legacy_feature_extractor_and_fast_names_dispatch_to_the_slow_processor():
    config = {"size": {"height": 32, "width": 32}}
    for type_key, type_name in (
        ("feature_extractor_type", "ViTFeatureExtractor"),
        ("image_processor_type", "ViTImageProcessorFast"),
    ):
        assert type(make_processor({type_key: type_name, **config})).__name__ == "FixedSizeProcessor"
    assert type(make_processor(config, {"model_type": "glpn"})).__name__ == "GLPNProcessor"
    with pytest.raises(BundleError, match="not supported.*supported: "):
        make_processor({"image_processor_type": "SiglipImageProcessor"})
    with pytest.raises(BundleError, match="resample"):
        make_processor({"image_processor_type": "ViTImageProcessor", "resample": 9})
    with pytest.raises(BundleError, match="image_mean"):
        make_processor({"image_processor_type": "ViTImageProcessor", "image_mean": [0.5, 0.5]})


def test_absurd_aspect_ratios_are_refused_or_handled_with_bounded_memory():
    strip = Image.new("RGB", (100000, 1), (200, 100, 50))
    # ConvNeXT would resize the 1-pixel edge to 73 and the other to 7.3 million pixels: refused
    convnext = make_processor(saved_config(*PROCESSOR_CONFIGS["convnext crop"]))
    with pytest.raises(InvalidInputError, match="aspect ratio is too extreme"):
        convnext([strip])
    # DETR would make the short edge 0 pixels: refused
    detr = make_processor(saved_config(*PROCESSOR_CONFIGS["detr"]))
    with pytest.raises(InvalidInputError, match="too small or too elongated"):
        detr([strip])
    # a fixed-size processor just resizes it
    vit = make_processor(saved_config(*PROCESSOR_CONFIGS["vit"]))
    assert vit([strip])["pixel_values"].shape == (1, 3, 32, 32)
    assert MAX_RESIZE_PIXELS < 2**27


# -- interpolation -----------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["bilinear", "bicubic", "nearest"])
@pytest.mark.parametrize(
    "sizes", [((16, 16), (384, 384)), ((384, 384), (75, 131)), ((37, 53), (640, 480)), ((9, 9), (9, 9))]
)
def test_interpolation_matches_torch(mode, sizes):
    (h, w), out = sizes
    x = (np.random.default_rng(7).standard_normal((4, h, w)) * 8).astype(np.float32)
    kwargs = {} if mode == "nearest" else {"align_corners": False}
    expected = torch.nn.functional.interpolate(torch.from_numpy(x)[None], size=out, mode=mode, **kwargs)[0].numpy()
    got = getattr(interpolate, mode)(x, out)
    assert got.shape == expected.shape and got.dtype == np.float32
    if mode == "nearest":
        assert np.array_equal(got, expected)
    else:  # one float32 rounding at most
        assert np.abs(got - expected).max() <= 4e-7 * max(1.0, float(np.abs(expected).max()))


# -- torch.topk order ------------------------------------------------------------------------------


def test_topk_unsorted_replays_torch_order():
    from edgetf.vision.topk import topk_unsorted

    rng = np.random.default_rng(11)
    for trial in range(400):
        n = int(rng.integers(1, 1500))
        k = int(rng.integers(0, n + 1)) if trial % 2 else max(1, n // 64 - int(rng.integers(0, 2)))
        values = [
            rng.random(n),  # distinct
            rng.integers(0, 4, n).astype(np.float64),  # many ties
            np.sort(rng.random(n)),  # presorted
        ][trial % 3].astype(np.float32)
        if trial % 7 == 0:
            values[rng.integers(0, n, max(1, n // 40))] = np.nan
        expected = torch.from_numpy(values).topk(k, sorted=False).indices.tolist()
        assert topk_unsorted(values.tolist(), k) == expected, (n, k, trial % 3)
    with pytest.raises(ValueError):
        topk_unsorted([1.0, 2.0], 3)
