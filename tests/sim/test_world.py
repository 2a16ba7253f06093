import pytest

from sim.world import (
    CLASSES,
    TOWNS,
    WEATHERS,
    UnknownTownError,
    UnknownWeatherError,
    all_domains,
    get_town,
    get_weather,
)


def test_catalogue_sizes():
    assert len(TOWNS) >= 5 and "Town10" in TOWNS
    assert {"ClearNoon", "CloudyNoon", "WetNoon", "HardRainNoon", "ClearSunset",
            "ClearNight"} <= set(WEATHERS)
    assert any("Fog" in w for w in WEATHERS)
    assert len(CLASSES) >= 8
    assert len(all_domains()) == len(TOWNS) * len(WEATHERS)


def test_unknown_town_names_it_and_suggests():
    with pytest.raises(UnknownTownError, match=r"unknown town 'Town1'.*did you mean"):
        get_town("Town1")


def test_unknown_weather_lists_presets():
    with pytest.raises(UnknownWeatherError, match="ClearNoon") as e:
        get_weather("Sunny")
    assert "'Sunny'" in str(e.value)


def test_town_class_mix_differs():
    highway, downtown, rural = TOWNS["Town04"], TOWNS["Town10"], TOWNS["Town01"]
    assert highway.mix["truck"] > downtown.mix["truck"]
    assert downtown.mix["pedestrian"] > 10 * highway.mix["pedestrian"]
    assert downtown.mix["bicycle"] > 5 * rural.mix["bicycle"]
