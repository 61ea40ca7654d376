"""``payments listen``'s receiver on its own (cli/listen.py), over real
sockets: a delivery signed with the endpoint's secret (by the
``standardwebhooks`` library, as the service signs) is forwarded as it came
and answered 200; a bad signature is refused and not forwarded; a forward
target that is down makes the service retry (502)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import httpx
from standardwebhooks import Webhook
from support import Receiver, serving

from cli import listen

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def signed(body: str, secret: str = SECRET) -> dict[str, str]:
    now = datetime.now(UTC)
    return {
        "content-type": "application/json",
        "webhook-id": "evt_abc_3",
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": Webhook(secret).sign("evt_abc_3", now, body),
    }


BODY = '{"id":"evt_abc_3","type":"payment.captured","payment_id":"pay_abc","seq":3}'


async def _through_the_receiver(forward_to: str, headers: dict[str, str]) -> tuple[int, list[str]]:
    said: list[str] = []
    receiver = listen.Receiver(forward_to, said.append)
    receiver.secret = SECRET
    server = listen.serve(receiver)
    try:
        port = server.server_address[1]
        async with httpx.AsyncClient() as http:
            answer = await http.post(f"http://127.0.0.1:{port}/", content=BODY, headers=headers)
    finally:
        await asyncio.to_thread(listen.stop, server)
        receiver.close()
    return answer.status_code, said


async def test_a_signed_delivery_is_forwarded_as_it_came() -> None:
    target = Receiver()
    async with serving(target) as url:
        status, said = await _through_the_receiver(f"{url}/hooks", signed(BODY))
    assert status == 200
    [forwarded] = target.received
    assert forwarded.body == BODY.encode()
    assert forwarded.headers["webhook-id"] == "evt_abc_3"
    Webhook(SECRET).verify(forwarded.body, forwarded.headers)
    assert "payment.captured" in said[0] and "signature ok" in said[0] and "-> 200" in said[0]


async def test_a_bad_signature_is_refused_and_not_forwarded() -> None:
    target = Receiver()
    async with serving(target) as url:
        other = "whsec_" + "B" * 44
        status, said = await _through_the_receiver(f"{url}/hooks", signed(BODY, other))
    assert status == 400
    assert target.received == []
    assert "BAD SIGNATURE" in said[0]


async def test_a_forward_target_that_is_down_makes_the_service_retry() -> None:
    status, said = await _through_the_receiver("http://127.0.0.1:9/hooks", signed(BODY))
    assert status == 502
    assert "unreachable" in said[0]
