import pytest

from app.mqtt.config import ConfigError, MqttVersion, Subscription, Transport, parse_url


@pytest.mark.parametrize(
    "url,transport,port,path",
    [
        ("mqtt://h", Transport.TCP, 1883, "/mqtt"),
        ("h:1884", Transport.TCP, 1884, "/mqtt"),
        ("mqtts://h", Transport.TLS, 8883, "/mqtt"),
        ("ws://h:8080/ws", Transport.WS, 8080, "/ws"),
        ("wss://h", Transport.WSS, 443, "/mqtt"),
    ],
)
def test_parse_url(url, transport, port, path):
    cfg = parse_url(url)
    assert (cfg.host, cfg.transport, cfg.effective_port, cfg.websocket_path) == ("h", transport, port, path)


def test_user_and_password_in_url_are_unquoted():
    cfg = parse_url("mqtts://app%40ttn:NNSXS.k@eu1.cloud.thethings.network:8883")
    assert cfg.username == "app@ttn" and cfg.password == "NNSXS.k"
    assert "NNSXS" not in cfg.describe()


@pytest.mark.parametrize(
    "url,message",
    [("http://h", "Unknown scheme"), ("mqtt://h:99999", "not a valid URL"), ("mqtt://", "no host")],
)
def test_bad_urls_are_sentences(url, message):
    with pytest.raises(ConfigError, match=message):
        parse_url(url)


@pytest.mark.parametrize("topic", ["a/#/b", "a/b#", "a+/b", "", "$share//x", "$share/g"])
def test_bad_filters(topic):
    with pytest.raises(ConfigError):
        Subscription(topic)


@pytest.mark.parametrize("topic", ["#", "a/+/c", "$share/g/a/#", "v3/app@ttn/devices/+/up"])
def test_good_filters(topic):
    assert Subscription(topic).topic == topic


def test_mqtt31_client_id_limit():
    with pytest.raises(ConfigError, match="23"):
        parse_url("mqtt://h", client_id="x" * 24, mqtt_version=MqttVersion.V31)
