"""`corral set image`: by container name, init containers included (as kubectl)."""

import pytest

from corral.cli.rollout import CommandError, set_images
from protos.corral.v1 import pod_pb2


def spec() -> pod_pb2.PodSpec:
    s = pod_pb2.PodSpec()
    s.init_containers.add(name="migrate", image="app:1")
    s.containers.add(name="web", image="app:1")
    return s


@pytest.mark.parametrize(
    ("images", "expected"),
    [
        pytest.param({"migrate": "app:2"}, ("app:2", "app:1"), id="init-container-by-name"),
        pytest.param({"web": "app:2"}, ("app:1", "app:2"), id="app-container-by-name"),
        pytest.param({"*": "app:3"}, ("app:3", "app:3"), id="star-is-every-container"),
    ],
)
def test_set_images(images: dict[str, str], expected: tuple[str, str]) -> None:
    s = spec()
    set_images(s, images)
    assert (s.init_containers[0].image, s.containers[0].image) == expected


def test_unknown_container_is_refused() -> None:
    with pytest.raises(CommandError, match='unable to find container named "db"'):
        set_images(spec(), {"db": "x:1"})
