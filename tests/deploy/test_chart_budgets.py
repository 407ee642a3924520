"""The chart's budgets (the bot's limits) and price table (the gateway's), rendered by Helm."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import helm_python as helm
import kubernetes_validate
import pytest

from bot.config.budget import PRICE_LIMIT, Budget, Price, PriceTable, parse_budget
from bot.config.settings import Settings
from tests.deploy.chart_render import (
    CHART,
    KUBERNETES_VERSION,
    NAMESPACE,
    RELEASE,
    objects_in,
    render,
    values_of,
)
from tests.executors.pss import check_restricted

PRICES_CONFIGMAP = f"{RELEASE}-gateway-prices"
CHECKSUM = "checksum/gateway-prices"
BUDGET_VARIABLES = {
    "maxRunBudget": "AGENTBOT_MAX_RUN_BUDGET",
    "userDailyRuns": "AGENTBOT_USER_DAILY_RUNS",
    "userDailyBudget": "AGENTBOT_USER_DAILY_BUDGET",
    "installationDailyBudget": "AGENTBOT_INSTALLATION_DAILY_BUDGET",
}
BUDGETS = {"maxRunBudget": "$5, 2M tokens", "userDailyRuns": 20, "userDailyBudget": "$20",
           "installationDailyBudget": "500k tokens"}
# A name the built-in table lacks, one that replaces a built-in pattern, one that YAML must
# quote, and prices that render oddly (1e-05, a bare 0).
PRICES: dict[str, dict[str, float]] = {
    "relay-model": {"input": 0.5, "output": 1.5},
    "claude-sonnet-4*": {"input": 2.7, "output": 13.5, "cache_read": 0.27, "cache_write": 3.375},
    "*-preview": {"input": 0.00001, "output": 3, "cache_read": 0.000001, "cache_write": 0},
}
TOPOLOGIES = {False: "default", True: "production"}  # standalone gateway -> values file


def _values(standalone: bool, *, config: dict[str, Any] | None = None,
            gateway: dict[str, Any] | None = None, **top: Any) -> dict[str, Any]:
    """A values file with these config and gateway keys over its own (production has budgets
    and prices of its own; the default file has neither)."""
    values = values_of(TOPOLOGIES[standalone])
    values["config"] = {**values.get("config", {}), **(config or {})}
    values["gateway"] = {**values.get("gateway", {}), **(gateway or {})}
    return {**values, **top}


def _objects(values: dict[str, Any]) -> tuple[dict[str, Any], ...]:
    return objects_in(render(values))


def _deployments(objects: tuple[dict[str, Any], ...]) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == "Deployment"}


def _containers(objects: tuple[dict[str, Any], ...]) -> dict[str, dict[str, Any]]:
    """The bot's and the gateway's containers, `agentbot` and `gateway`, wherever they run."""
    return {c["name"]: c for d in _deployments(objects).values()
            for c in d["spec"]["template"]["spec"]["containers"]}


def _gateway_template(objects: tuple[dict[str, Any], ...]) -> dict[str, Any]:
    (template,) = [d["spec"]["template"] for d in _deployments(objects).values()
                   if any(c["name"] == "gateway" for c in d["spec"]["template"]["spec"][
                       "containers"])]
    return template


def _env(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {item["name"]: item for item in container["env"]}


def _prices_configmap(objects: tuple[dict[str, Any], ...]) -> dict[str, Any] | None:
    maps = [o for o in objects if o["kind"] == "ConfigMap"]
    assert [m["metadata"]["name"] for m in maps] in ([], [PRICES_CONFIGMAP])
    return maps[0] if maps else None


# --- Budgets: the bot's environment ---------------------------------------------------------


@pytest.mark.parametrize("standalone", [False, True])
def test_budgets_are_the_bots_environment_only(standalone: bool) -> None:
    containers = _containers(_objects(_values(standalone, config=BUDGETS)))
    bot, gateway = _env(containers["agentbot"]), _env(containers["gateway"])
    for key, variable in BUDGET_VARIABLES.items():
        assert bot[variable] == {"name": variable, "value": str(BUDGETS[key])}
        assert variable not in gateway
    settings = Settings(_env_file=None, **{  # type: ignore[call-arg]
        name: item["value"] for name, item in bot.items() if "value" in item})
    assert settings.run_budget_cap == Budget(dollars=5.0, tokens=2_000_000)
    assert settings.user_daily_runs == 20
    assert settings.user_budget == Budget(dollars=20.0)
    assert settings.installation_budget == Budget(tokens=500_000)


def test_unset_budgets_render_no_variable() -> None:
    # The defaults: "" and null, no limit; the bot reads an absent variable the same way.
    defaults = values_of("default")
    assert not {"maxRunBudget", "userDailyRuns"} & set(defaults.get("config", {}))
    for values in (defaults, _values(False, config={"userDailyRuns": None, "maxRunBudget": ""})):
        env = _env(_containers(_objects(values))["agentbot"])
        assert not set(BUDGET_VARIABLES.values()) & set(env)


def test_each_budget_renders_alone() -> None:
    for key, variable in BUDGET_VARIABLES.items():
        env = _env(_containers(_objects(_values(False, config={key: BUDGETS[key]})))["agentbot"])
        assert set(BUDGET_VARIABLES.values()) & set(env) == {variable}


def test_the_production_values_set_every_budget() -> None:
    # What test_chart.py's lint, schema and Kubernetes validation of production then cover.
    assert set(BUDGET_VARIABLES) <= set(values_of("production")["config"])
    assert values_of("production")["gateway"]["prices"]


# --- The price table: a ConfigMap, mounted into the gateway ---------------------------------


def test_no_prices_no_configmap() -> None:
    objects = _objects(_values(False))
    assert _prices_configmap(objects) is None
    for container in _containers(objects).values():
        assert "AGENTBOT_PRICE_TABLE" not in _env(container)
        assert "gateway-prices" not in {m["name"] for m in container["volumeMounts"]}
    assert CHECKSUM not in (_gateway_template(objects)["metadata"].get("annotations") or {})


@pytest.mark.parametrize("standalone", [False, True])
def test_the_gateway_reads_the_prices_from_the_configmap(standalone: bool) -> None:
    objects = _objects(_values(standalone, gateway={"prices": PRICES}))
    configmap = _prices_configmap(objects)
    assert configmap is not None
    assert configmap["metadata"]["labels"]["app.kubernetes.io/component"] == "gateway"
    assert list(configmap["data"]) == ["prices.yml"]
    template = _gateway_template(objects)
    gateway = _containers(objects)["gateway"]
    path = Path(_env(gateway)["AGENTBOT_PRICE_TABLE"]["value"])
    (mount,) = [m for m in gateway["volumeMounts"] if m["mountPath"] == str(path.parent)]
    assert mount["readOnly"] is True
    (volume,) = [v for v in template["spec"]["volumes"] if v["name"] == mount["name"]]
    assert volume["configMap"] == {"name": PRICES_CONFIGMAP,
                                   "items": [{"key": "prices.yml", "path": path.name}]}
    # Only the gateway prices tokens: the bot neither mounts the table nor names it.
    bot = _containers(objects)["agentbot"]
    assert "AGENTBOT_PRICE_TABLE" not in _env(bot)
    assert mount["name"] not in {m["name"] for m in bot["volumeMounts"]}
    if standalone:
        bot_pod = _deployments(objects)[RELEASE]["spec"]["template"]["spec"]
        assert mount["name"] not in {v["name"] for v in bot_pod["volumes"]}


def test_the_rendered_table_gives_the_prices_of_the_values(tmp_path: Path) -> None:
    objects = _objects(_values(False, gateway={"prices": PRICES}))
    configmap = _prices_configmap(objects)
    assert configmap is not None
    text = configmap["data"]["prices.yml"]
    table = PriceTable.parse(text, "prices.yml")
    # Unlisted cache prices are the input price, as the bot reads any operator's table.
    assert table.entries == {
        name: Price(input=p["input"], output=p["output"],
                    cache_read=p.get("cache_read", p["input"]),
                    cache_write=p.get("cache_write", p["input"]))
        for name, p in PRICES.items()
    }
    # The gateway's settings, with the mounted file at the path they name: over the built-in
    # table, replacing its entry of the same name and keeping the others.
    gateway_env = _env(_containers(objects)["gateway"])
    mounted = tmp_path / Path(gateway_env["AGENTBOT_PRICE_TABLE"]["value"]).name
    mounted.write_text(text, encoding="utf-8")
    env = {name: item["value"] for name, item in gateway_env.items() if "value" in item}
    env["AGENTBOT_PRICE_TABLE"] = str(mounted)
    settings = Settings(_env_file=None, **env)  # type: ignore[call-arg]
    prices = settings.prices()
    assert prices.price("relay-model") == Price(0.5, 1.5, 0.5, 0.5)
    assert prices.price("claude-sonnet-4-5-20250929") == Price(2.7, 13.5, 0.27, 3.375)
    assert prices.price("gpt-5-mini") == Price(0.25, 2.0, 0.025, 0.0)
    assert prices.price("o3-pro-preview") == Price(0.00001, 3.0, 0.000001, 0.0)


@pytest.mark.parametrize("standalone", [False, True])
def test_a_price_change_rolls_the_pods_that_run_the_gateway(standalone: bool) -> None:
    def checksums(prices: dict[str, Any]) -> dict[str, str | None]:
        objects = _objects(_values(standalone, gateway={"prices": prices},
                                   podAnnotations={"team": "platform"}))
        return {name: (d["spec"]["template"]["metadata"].get("annotations") or {}).get(CHECKSUM)
                for name, d in _deployments(objects).items()}

    before = checksums(PRICES)
    assert checksums(dict(PRICES)) == before
    after = checksums({**PRICES, "relay-model": {"input": 0.6, "output": 1.5}})
    gateway_pods = f"{RELEASE}-gateway" if standalone else RELEASE
    assert before[gateway_pods] and after[gateway_pods]
    assert before[gateway_pods] != after[gateway_pods]
    if standalone:
        # The bot's pods do not read prices: they stay.
        assert before[RELEASE] is None and after[RELEASE] is None


def test_the_checksum_keeps_the_operators_pod_annotations() -> None:
    objects = _objects(_values(False, gateway={"prices": PRICES},
                               podAnnotations={"team": "platform"}))
    annotations = _gateway_template(objects)["metadata"]["annotations"]
    assert set(annotations) == {"team", CHECKSUM}
    assert annotations["team"] == "platform"


# --- Helm and Kubernetes accept both topologies -------------------------------------------


@pytest.mark.parametrize("standalone", [False, True])
def test_budgets_and_prices_lint_and_validate(standalone: bool) -> None:
    values = _values(standalone, config=BUDGETS, gateway={"prices": PRICES})
    report = helm.lint(CHART, values, strict=True, namespace=NAMESPACE,
                       kube_version=f"v{KUBERNETES_VERSION}")
    assert report["errors"] == []
    assert [m for m in report["messages"] if m["severity"] >= 2] == []
    objects = _objects(values)
    assert _prices_configmap(objects) is not None
    for obj in objects:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
    for deployment in _deployments(objects).values():
        template = deployment["spec"]["template"]
        assert check_restricted(template["spec"],
                                annotations=template["metadata"].get("annotations") or {}) == []


# --- The schema -----------------------------------------------------------------------------

# parse_budget's forms; the schema's pattern must take each one.
GOOD_BUDGETS = ["$5", "$ 0.50", "5 usd", "3 Dollars", "2M tokens", "500k", "1500", "10K token",
                "$5, 2M tokens", "2m,$5", " $3 , 500k "]
# What parse_budget refuses for its form, and so the schema too.
BAD_BUDGETS = ["5$", "five dollars", "$", "$5,", ", $5", "$5, $6", "2M, 3k", "-$5", "$1e3",
               "2 G tokens", "$5; 2M tokens", " ", "$5 2M"]
# Well-formed but refused by the bot at start (the schema does not count): zero and too much.
BAD_AMOUNTS = ["$0", "0 tokens", "$2000000"]


def _schema_error(values: dict[str, Any]) -> str:
    with pytest.raises(helm.HelmValuesError) as caught:
        render(values)
    return str(caught.value)


def test_the_budget_samples_are_what_the_bot_parses() -> None:
    for text in GOOD_BUDGETS:
        assert parse_budget(text)
    for text in BAD_BUDGETS + BAD_AMOUNTS:
        with pytest.raises(ValueError):
            parse_budget(text)


@pytest.mark.parametrize("text", GOOD_BUDGETS + BAD_AMOUNTS)
def test_schema_takes_a_budget_in_any_form_the_bot_reads(text: str) -> None:
    render(_values(False, config={key: text for key in BUDGET_VARIABLES if key != "userDailyRuns"}))


@pytest.mark.parametrize("text", BAD_BUDGETS)
@pytest.mark.parametrize("key", ["maxRunBudget", "userDailyBudget", "installationDailyBudget"])
def test_schema_refuses_a_malformed_budget(key: str, text: str) -> None:
    assert f"at '/config/{key}'" in _schema_error(_values(False, config={key: text}))


@pytest.mark.parametrize("runs", [0, -1, 2.5, "20"])
def test_schema_refuses_daily_runs_below_one_or_not_a_count(runs: Any) -> None:
    assert "at '/config/userDailyRuns'" in _schema_error(
        _values(False, config={"userDailyRuns": runs}))


@pytest.mark.parametrize(
    ("price", "where"),
    [
        ({"input": 1, "output": 2, "cached": 0.1}, "/gateway/prices/m"),
        ({"input": 1}, "/gateway/prices/m"),
        ({"input": -1, "output": 2}, "/gateway/prices/m/input"),
        ({"input": 1, "output": "2"}, "/gateway/prices/m/output"),
        ({"input": 1, "output": 20000}, "/gateway/prices/m/output"),
        ("1, 2", "/gateway/prices/m"),
    ],
)
def test_schema_refuses_a_malformed_price(price: Any, where: str) -> None:
    assert f"at '{where}'" in _schema_error(_values(False, gateway={"prices": {"m": price}}))


def test_the_schema_price_limit_is_the_bots() -> None:
    # The schema's most per million tokens is the one the bot's parser takes.
    schema = json.loads((CHART / "values.schema.json").read_text())
    assert schema["definitions"]["pricePerMillion"]["maximum"] == PRICE_LIMIT
