"""The store key's format (`key_of`) read back: the job and the variant of a key."""
import pytest

from jobs.catalog import job_of_key, key_of, variant_of_key


@pytest.mark.parametrize("job, variant, target, partner, source", [
    ("octave", "", 3, -1, ""),                          # no variant: "-" in the key, "" read back
    ("addition", "juxtapose", 1, 2, ""),
    ("interpolate", "", 1, 2, "photo.png"),
    ("transfigure", "", 4, -1, "a:1:-1:0.png"),         # a source name may hold colons, even key-like ones
    ("dream", "block2+block3:0,5", -1, -1, "photo.png"),
    ("dream", "block3:2", -1, -1, "photo.png"),         # maps that look like a target
    ("directed-dream", "block3:5", 5, -1, "x:1:2.png"),   # ... and equal to it
    ("directed-dream", "a:3+b:7", 3, -1, "p.jpg"),
])
def test_the_variant_of_a_key_is_the_one_it_was_made_with(job, variant, target, partner, source):
    """`sweep analyze`'s stability tables read the variant from trajectories/ keys (that table has no variant
    column); a layer variant holds colons, and so may a source's name."""
    key = key_of(job, variant, target, partner, 7, source)
    assert variant_of_key(key) == variant and job_of_key(key) == job
    assert variant_of_key(f"{key}#frame3") == variant   # an interpolation frame's key
