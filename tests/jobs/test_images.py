"""Real-image inputs: every mode becomes RGB, EXIF orientation is applied, bad files are listed together, a folder
is checked on several threads in order."""
from __future__ import annotations

import threading

import numpy as np
import pytest
from PIL import Image

import jobs.images
from jobs.images import AHEAD_PER_THREAD, ImageInputError, in_order, load_images, noise_images, parse_noise, \
    read_image, sample_images


def _save(path, image, **kwargs):
    image.save(path, **kwargs)
    return path


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "CMYK", "I;16", "LA", "RGB"])
def test_every_mode_becomes_rgb(tmp_path, mode):
    base = Image.new("RGB", (20, 10), (200, 40, 10))
    image = base.convert(mode) if mode not in ("I;16",) else Image.fromarray(
        np.full((10, 20), 40000, dtype=np.uint16))
    suffix = ".jpg" if mode == "CMYK" else ".png"
    pixels = read_image(_save(tmp_path / f"in{suffix}", image))
    assert pixels.shape == (10, 20, 3) and pixels.dtype == np.uint8
    if mode == "I;16":
        assert abs(int(pixels[0, 0, 0]) - round(40000 / 65535 * 255)) <= 1


def test_a_dark_16_bit_image_stays_dark(tmp_path):
    """A 16-bit file's depth is its mode's, not guessed from its values: a dark one (every value below 256 of
    65535) must not be read as 8-bit and brightened 257 times."""
    dark = Image.fromarray(np.full((10, 20), 200, dtype=np.uint16))          # I;16
    assert dark.mode == "I;16"
    pixels = read_image(_save(tmp_path / "dark.png", dark))
    assert int(pixels.max()) == round(200 / 65535 * 255) == 1


def test_transparency_composites_on_white(tmp_path):
    image = Image.new("RGBA", (4, 4), (0, 0, 0, 0))
    assert (read_image(_save(tmp_path / "clear.png", image)) == 255).all()


def test_exif_orientation_is_applied(tmp_path):
    image = Image.new("RGB", (30, 10), (0, 0, 0))
    image.paste((255, 255, 255), (0, 0, 5, 10))  # a white bar at the left edge
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to view"
    pixels = read_image(_save(tmp_path / "rotated.jpg", image, exif=exif, quality=95))
    assert pixels.shape == (30, 10, 3)  # portrait after the rotation
    assert pixels[:5].mean() > 200 and pixels[-5:].mean() < 50  # the bar is now at the top


@pytest.mark.parametrize("suffix", [".png", ".webp", ".jpg"])
def test_an_exif_block_that_does_not_parse_leaves_the_picture_as_stored(tmp_path, suffix):
    """Hunt: a PNG or WebP whose EXIF block is not TIFF data was refused as 'not a readable image (SyntaxError: not
    a TIFF file ...)', while a JPEG with the same block was read: its pixels are whole, and viewers show them."""
    image = Image.new("RGB", (6, 4), (10, 200, 30))
    path = _save(tmp_path / f"odd-exif{suffix}", image, exif=b"Exif\x00\x00garbage", lossless=True, quality=100)
    pixels = read_image(path)
    assert pixels.shape == (4, 6, 3) and np.abs(pixels.astype(int) - (10, 200, 30)).max() <= 3


def test_all_bad_inputs_listed_in_one_error(tmp_path):
    good = _save(tmp_path / "good.png", Image.new("RGB", (8, 8)))
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    truncated = tmp_path / "half.png"
    truncated.write_bytes(good.read_bytes()[:20])
    with pytest.raises(ImageInputError) as raised:
        load_images([good, text, truncated, tmp_path / "missing.jpg"])
    message = str(raised.value)
    assert "3 input(s)" in message
    assert all(name in message for name in ("notes.png", "half.png", "missing.jpg"))
    assert "good.png" not in message


def test_folders_expand_to_their_images(tmp_path):
    for name in ("b.png", "a.jpg"):
        _save(tmp_path / name, Image.new("RGB", (8, 8)))
    (tmp_path / "readme.txt").write_text("skip me")
    assert [image.name for image in load_images([tmp_path])] == ["a.jpg", "b.png"]
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ImageInputError, match="no image files"):
        load_images([empty])


def test_sample_photographs():
    samples = sample_images()
    assert [s.name for s in samples] == ["china.jpg", "flower.jpg"]
    assert all(s.read().shape == (427, 640, 3) and s.read().dtype == np.uint8 for s in samples)


def test_noise_images_are_seed_004s_start_in_8_bits_and_the_same_every_time():
    images = noise_images(3, 40)
    assert [image.name for image in images] == ["noise-000", "noise-001", "noise-002"]
    reference = np.random.default_rng(1).random((40, 40, 3)) / 10 + 0.5      # torch.rand(...)/10 + 0.5, seeded
    np.testing.assert_array_equal(images[1].read(), np.round(reference * 255).astype(np.uint8))
    for pixels in (image.read() for image in images):
        assert pixels.shape == (40, 40, 3) and pixels.dtype == np.uint8
        assert pixels.min() >= 128 and pixels.max() <= 153        # [0.5, 0.6] x 255, rounded
        assert 138 < pixels.mean() < 143                          # uniform: mean 0.55 x 255 = 140
    assert not np.array_equal(images[0].read(), images[1].read())
    again = noise_images(2, 40)
    assert all(np.array_equal(a.read(), b.read()) for a, b in zip(images, again))   # index-seeded, not count


@pytest.mark.parametrize("spec, parsed", [("noise:4", (4, None)), ("noise:4:299", (4, 299)),
                                          ("noise:1000:8", (1000, 8))])
def test_noise_specs(spec, parsed):
    assert parse_noise(spec) == parsed


@pytest.mark.parametrize("spec", ["noise:", "noise:0", "noise:1001", "noise:3:0", "noise:3:x", "noise:1:2:3"])
def test_bad_noise_specs_name_the_value(spec):
    with pytest.raises(ImageInputError, match=f"^--images {spec}: "):
        parse_noise(spec)


def test_a_file_given_twice_is_one_source(tmp_path):
    """A folder and a file inside it (or one path written twice, or through `..`) name one picture: one source, not
    two of one name (which the sweep refuses as two pictures to rename)."""
    for name in ("a.png", "b.png"):
        _save(tmp_path / name, Image.new("RGB", (8, 8)))
    (tmp_path / "sub").mkdir()
    images = load_images([tmp_path, tmp_path / "a.png", tmp_path / "sub" / ".." / "b.png", tmp_path])
    assert [image.name for image in images] == ["a.png", "b.png"]


def test_a_link_loop_is_listed_as_missing_not_a_traceback(tmp_path):
    good = _save(tmp_path / "good.png", Image.new("RGB", (8, 8)))
    (tmp_path / "loop.png").symlink_to(tmp_path / "loop.png")
    with pytest.raises(ImageInputError, match="loop.png: no such file"):
        load_images([good, tmp_path / "loop.png"])


def test_a_folders_link_to_nothing_is_listed_as_missing_not_left_out(tmp_path):
    """Hunt: a folder of links into a cache that lost some of its files (a dataset's snapshot) gave only the
    pictures still there, without a word."""
    _save(tmp_path / "good.png", Image.new("RGB", (8, 8)))
    (tmp_path / "gone.jpg").symlink_to(tmp_path / "cache" / "blob")
    (tmp_path / "notes.txt").symlink_to(tmp_path / "cache" / "text")       # not a picture by name: left out
    with pytest.raises(ImageInputError) as error:
        load_images([tmp_path])
    assert str(error.value) == f"1 input(s) are not readable images: {tmp_path / 'gone.jpg'}: no such file (a link " \
                               f"that leads nowhere)"


@pytest.mark.parametrize("mode, clear", [("L", 0), ("RGB", (0, 0, 0))])
def test_a_transparent_colour_key_composites_on_white_too(tmp_path, mode, clear):
    """A greyscale or RGB PNG may mark one value transparent (its tRNS chunk) instead of carrying an alpha band:
    those pixels are transparent like an RGBA image's, so on white, not their colour."""
    image = Image.new(mode, (4, 4), clear)
    image.paste(100 if mode == "L" else (100, 100, 100), (0, 0, 2, 4))    # the left half opaque grey
    pixels = read_image(_save(tmp_path / "keyed.png", image, transparency=clear))
    assert (pixels[:, :2] == 100).all() and (pixels[:, 2:] == 255).all()


def test_a_32_bit_image_brighter_than_16_bits_saturates_instead_of_wrapping(tmp_path):
    bright = Image.fromarray(np.full((4, 4), 100_000, dtype=np.int32))       # mode I
    assert bright.mode == "I"
    assert (read_image(_save(tmp_path / "bright.tif", bright)) == 255).all()


def test_a_folder_s_hidden_files_are_not_pictures(tmp_path):
    """A folder copied from a Mac holds `._cat.png` (AppleDouble metadata, not a PNG) beside `cat.png`: it failed the
    whole run as an unreadable image. Hidden files of a folder are left out; one named on its own is still read."""
    _save(tmp_path / "cat.png", Image.new("RGB", (8, 8)))
    (tmp_path / "._cat.png").write_bytes(b"\x00\x05\x16\x07 AppleDouble metadata")
    assert [image.name for image in load_images([tmp_path])] == ["cat.png"]
    with pytest.raises(ImageInputError, match=r"\._cat\.png"):
        load_images([tmp_path / "._cat.png"])


def test_a_folder_s_subfolders_and_files_of_other_kinds_are_said_to_be_left_out(tmp_path):
    """The reader takes the pictures directly in a folder: a folder of class folders (ImageNet's layout) gave none
    and said only that it held no image files, and `.jfif` or `.heic` files were left out without a word."""
    from jobs.images import left_out, unread_entries
    _save(tmp_path / "cat.png", Image.new("RGB", (8, 8)))
    for name in ("n01", "n02", "n03", "n04"):
        (tmp_path / name).mkdir()
    (tmp_path / "dog.jfif").write_bytes(b"x")
    (tmp_path / ".DS_Store").write_bytes(b"x")                                   # hidden: never said
    assert unread_entries(tmp_path) == "4 subfolders (n01, n02, n03, ...) and 1 file of another kind (dog.jfif)"
    assert left_out([tmp_path, tmp_path / "cat.png", "noise:2"]) == [
        f"--images {tmp_path}: left out 4 subfolders (n01, n02, n03, ...) and 1 file of another kind (dog.jfif); "
        f"read are the pictures directly in it (.png, .jpg, .jpeg, .bmp, .gif, .tif, .tiff, .webp)"]
    assert [image.name for image in load_images([tmp_path])] == ["cat.png"]
    (tmp_path / "cat.png").unlink()
    with pytest.raises(ImageInputError, match=r"no image files found in \S+ \(not read: \S+: 4 subfolders \(n01, "
                                              r"n02, n03, \.\.\.\) and 1 file of another kind \(dog\.jfif\)\)$"):
        load_images([tmp_path])
    assert left_out([tmp_path / "n01"]) == [] and unread_entries(tmp_path / "n01") == ""


def _float_tiff(path, values):
    image = Image.fromarray(np.asarray(values, dtype=np.float32))
    assert image.mode == "F"
    return _save(path, image)


def test_a_float_image_in_unit_range_is_scaled_to_8_bits(tmp_path):
    """Scientific tools write intensities as 32-bit float TIFFs with values in [0, 1]: Pillow's own conversion read
    them as 0-255 and truncated, so the whole picture came out black (0 or 1 of 255)."""
    ramp = np.linspace(0, 1, 20).reshape(4, 5)
    pixels = read_image(_float_tiff(tmp_path / "ramp.tif", ramp))
    assert pixels.shape == (4, 5, 3) and pixels.dtype == np.uint8
    np.testing.assert_array_equal(pixels[..., 0], np.round(ramp.astype(np.float32) * 255).astype(np.uint8))
    assert (pixels[..., 0] == pixels[..., 2]).all()


def test_a_float_image_a_rounding_error_past_1_is_still_unit_range(tmp_path):
    pixels = read_image(_float_tiff(tmp_path / "over.tif", [[0.5, 1.0000001], [-1e-7, 0.25]]))
    assert pixels[..., 0].tolist() == [[128, 255], [0, 64]]


def test_a_float_image_of_8_bit_values_keeps_them(tmp_path):
    """An 8-bit image saved as float (values up to 255) reads as it did before, not scaled by its maximum: a dark
    one stays dark."""
    pixels = read_image(_float_tiff(tmp_path / "eight.tif", [[0, 40.0], [100.0, 255.0]]))
    assert pixels[..., 0].tolist() == [[0, 40], [100, 255]]
    dark = read_image(_float_tiff(tmp_path / "dark.tif", np.full((2, 2), 20.0)))
    assert (dark == 20).all()


@pytest.mark.parametrize("values, words", [([[-0.5, 0.5]], "from -0.5 to 0.5"), ([[0, 4000.0]], "from 0 to 4000"),
                                           ([[np.nan, 0.5]], "NaN or infinity")])
def test_a_float_image_of_another_range_is_refused_in_one_line(tmp_path, values, words):
    path = _float_tiff(tmp_path / "odd.tif", values)
    with pytest.raises(ImageInputError) as raised:
        load_images([path])
    message = str(raised.value)
    assert words in message and "odd.tif" in message and "\n" not in message


# ---- a folder is checked on several threads, in order, a few pictures at a time -------------------------------

class AtOnce:
    """`function`, counting its calls that run at once (`most`). Until two have run together each call waits for a
    second one (at most `patience` seconds, once): calls made one after another never overlap (`most` 1), and the
    first two calls made on two threads always do (`most` 2), however the threads are scheduled."""

    def __init__(self, function, patience: float = 5.0):
        self.function, self.patience = function, patience
        self.lock, self.met = threading.Lock(), threading.Event()
        self.running = self.most = self.calls = 0

    def __call__(self, *args, **kwargs):
        with self.lock:
            self.running, self.calls = self.running + 1, self.calls + 1
            self.most = max(self.most, self.running)
            if self.running >= 2:
                self.met.set()
        try:
            if not self.met.wait(self.patience):
                self.met.set()   # no second call came: the calls are made one after another; wait no more
            return self.function(*args, **kwargs)
        finally:
            with self.lock:
                self.running -= 1


def _folder(tmp_path, count: int = 9):
    """`count` small pictures, PNG and JPEG in turn, and among them a text file, a truncated PNG and an empty
    JPEG; then a missing file named after the folder."""
    rng, paths = np.random.default_rng(5), []
    for index in range(count):
        path = tmp_path / f"p{index:02d}.{'png' if index % 2 else 'jpg'}"
        _save(path, Image.fromarray(rng.integers(0, 256, (8 + index, 12, 3), dtype=np.uint8)))
        paths.append(path)
    paths[2].write_text("not an image")
    paths[5].write_bytes(paths[5].read_bytes()[:30])
    paths[6].write_bytes(b"")
    return [*paths, tmp_path / "missing.png"]


def test_two_pictures_are_decoded_at_once_on_two_threads(tmp_path, monkeypatch):
    """A folder of 50,000 photographs took tens of minutes to check on one core: Pillow's decoders let go of the
    GIL, so `threads` of them decode together."""
    files = _folder(tmp_path)[:2]
    decode = AtOnce(read_image)
    monkeypatch.setattr(jobs.images, "read_image", decode)
    assert [image.name for image in load_images(files, threads=2)] == [path.name for path in files]
    assert decode.most == 2


def test_the_outcome_and_the_bad_files_error_are_the_same_on_any_number_of_threads(tmp_path):
    """Same sources in the same order, same one error listing every bad file in the inputs' order, on 1 or 3
    threads."""
    files = _folder(tmp_path)
    errors = []
    for threads in (1, 3):
        with pytest.raises(ImageInputError) as raised:
            load_images(files, threads=threads)
        errors.append(str(raised.value))
    assert errors[0] == errors[1]
    listed = [errors[0].index(files[i].name) for i in (2, 5, 6, 9)]
    assert errors[0].startswith("4 input(s) are not readable images: ") and listed == sorted(listed)
    good = [path for i, path in enumerate(files) if i not in (2, 5, 6, 9)]
    one, three = load_images(good, threads=1), load_images(good, threads=3)
    assert [image.name for image in one] == [image.name for image in three] == [path.name for path in good]
    assert all(np.array_equal(a.read(), b.read()) for a, b in zip(one, three))


def test_the_check_gives_its_decoded_pixels_to_a_digest_and_decodes_each_file_once(tmp_path, monkeypatch):
    """A caller that hashes the pictures (the sweep's manifest) does it in the check's decode, not in another."""
    files = [path for i, path in enumerate(_folder(tmp_path)) if i not in (2, 5, 6, 9)]
    decode = AtOnce(read_image, patience=0)
    monkeypatch.setattr(jobs.images, "read_image", decode)
    images = load_images(files, threads=3, digest=lambda pixels: f"{pixels.shape}:{int(pixels.sum())}")
    assert decode.calls == len(files)
    assert [image.digest for image in images] == [f"{p.shape}:{int(p.sum())}" for p in map(read_image, files)]
    assert all(image.digest == "" for image in load_images(files))


@pytest.mark.parametrize("threads", [1, 3])
def test_in_order_keeps_the_order_and_hands_out_a_few_items_at_a_time(threads):
    """`in_order` over 500 items: their results in their order, and never more than AHEAD_PER_THREAD x threads of
    them (each perhaps a decoded picture) handed out and not given back, whatever the items' count."""
    taken = given = most_out = 0

    def items():
        nonlocal taken
        for item in range(500):
            taken += 1
            yield item

    results = []
    for result in in_order(lambda item: item * item, items(), threads):
        given += 1
        most_out = max(most_out, taken - given + 1)   # the one just given back was out until now
        results.append(result)
    assert results == [item * item for item in range(500)]
    assert most_out <= AHEAD_PER_THREAD * threads + 1


def test_in_order_raises_an_item_s_error_in_its_turn_and_starts_no_more():
    started = []

    def square(item):
        started.append(item)
        if item == 7:
            raise ValueError("seven")
        return item * item

    out = in_order(square, range(10_000), 3)
    assert [next(out) for _ in range(7)] == [item * item for item in range(7)]
    with pytest.raises(ValueError, match="seven"):
        next(out)
    assert len(started) <= 7 + 1 + AHEAD_PER_THREAD * 3
