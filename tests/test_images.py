import numpy as np
import pytest
from PIL import Image

from conftest import png_bomb_header, write_image
from ripik_clf.data.images import BadImage, probe, read_rgb


def test_reads_rgb_png(tmp_path):
    path = write_image(tmp_path / "a.png", size=32)
    image = read_rgb(path)
    assert image.shape == (32, 32, 3) and image.dtype == np.uint8
    assert np.array_equal(image, np.asarray(Image.open(path).convert("RGB")))


@pytest.mark.parametrize(
    "name,fmt", [("a.bmp", "BMP"), ("a.webp", "WEBP"), ("a.tif", "TIFF"), ("a.jpeg", "JPEG")]
)
def test_other_supported_formats(tmp_path, name, fmt):
    image = read_rgb(write_image(tmp_path / name, fmt=fmt))
    assert image.shape == (32, 32, 3)


def test_png_named_jpg_is_read_by_content(tmp_path):
    path = write_image(tmp_path / "really_png.jpg", fmt="PNG")
    assert probe(path)[0] == "PNG"
    assert read_rgb(path).shape == (32, 32, 3)


def test_grayscale_rgba_palette_become_rgb(tmp_path):
    Image.new("L", (8, 6), 77).save(tmp_path / "g.png")
    Image.new("RGBA", (8, 6), (10, 20, 30, 0)).save(tmp_path / "rgba.png")
    Image.new("RGB", (8, 6), (200, 100, 50)).convert("P").save(tmp_path / "p.png")
    assert (read_rgb(tmp_path / "g.png") == 77).all()
    assert read_rgb(tmp_path / "rgba.png")[0, 0].tolist() == [10, 20, 30]
    assert read_rgb(tmp_path / "p.png").shape == (6, 8, 3)


def test_16_bit_png_is_scaled_not_clipped(tmp_path):
    values = np.array([[0, 257 * 100, 65535]], dtype=np.uint16)
    Image.fromarray(values).save(tmp_path / "deep.png")
    assert read_rgb(tmp_path / "deep.png")[0, :, 0].tolist() == [0, 100, 255]


def test_cmyk_jpeg(tmp_path):
    Image.new("CMYK", (16, 16), (0, 255, 255, 0)).save(tmp_path / "cmyk.jpg")
    red = read_rgb(tmp_path / "cmyk.jpg")[8, 8]
    assert red[0] > 200 and red[1] < 60 and red[2] < 60


def test_exif_orientation_is_applied(tmp_path):
    image = Image.new("RGB", (40, 20), (0, 0, 0))
    image.paste((255, 255, 255), (0, 0, 10, 20))  # white strip on the left
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    image.save(tmp_path / "phone.jpg", exif=exif, quality=100)
    upright = read_rgb(tmp_path / "phone.jpg")
    assert upright.shape == (40, 20, 3)
    assert upright[:5].mean() > 200 and upright[-5:].mean() < 50  # strip now on top


def test_unicode_and_spaces_in_names(tmp_path):
    path = write_image(tmp_path / "ünï cödé 画像.png")
    assert read_rgb(path).shape == (32, 32, 3)


@pytest.mark.parametrize(
    "make,reason",
    [
        (lambda p: p.write_bytes(b""), "empty file"),
        (lambda p: p.write_text("hello, not a picture"), "not an image"),
        (lambda p: Image.new("RGB", (16, 16)).save(p, format="ICO"), "unsupported format ICO"),
        (lambda p: png_bomb_header(p), "too large: 30000x30000"),
    ],
    ids=["zero-byte", "text", "ico", "bomb"],
)
def test_refused_from_header(tmp_path, make, reason):
    path = tmp_path / "bad.jpg"
    make(path)
    with pytest.raises(BadImage, match=reason):
        probe(path)
    with pytest.raises(BadImage, match=reason):
        read_rgb(path)


def test_truncated_jpeg_fails_on_decode(tmp_path):
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(tmp_path / "t.jpg")
    data = (tmp_path / "t.jpg").read_bytes()
    (tmp_path / "t.jpg").write_bytes(data[: len(data) // 2])
    probe(tmp_path / "t.jpg")  # the header is intact
    with pytest.raises(BadImage, match="truncated"):
        read_rgb(tmp_path / "t.jpg")


def test_a_gif_named_jpg_reads_as_its_first_frame(tmp_path):
    """Web scrapers save GIFs under .jpg names; Pillow reads the first frame."""
    red, blue = Image.new("RGB", (20, 10), (255, 0, 0)), Image.new("RGB", (20, 10), (0, 0, 255))
    path = tmp_path / "scraped.jpg"
    red.save(path, format="GIF", save_all=True, append_images=[blue], duration=100)
    pixels = read_rgb(path)
    assert pixels.shape == (10, 20, 3)
    assert tuple(pixels[5, 5]) == (255, 0, 0)
