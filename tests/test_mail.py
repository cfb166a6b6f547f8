"""Mail: the shop's and the platform's mail pages, codes in the delivery mail only when the shop
asks for it, bodies for the shop's owner only, and SMTP sending (sent, or failed and retried)."""

from __future__ import annotations

import smtplib
import socketserver
import threading

import pytest
from sqlalchemy import select

from kameng.mail.models import MailMessage
from kameng.mail.service import deliver_message, queue_mail

# -- a tiny SMTP server -----------------------------------------------------------------------


class FakeSMTP(socketserver.ThreadingTCPServer):
    """Enough SMTP for smtplib: keeps what it receives, or refuses every recipient."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, refuse: bool = False):
        self.refuse = refuse
        self.received: list[dict] = []
        super().__init__(("127.0.0.1", 0), SMTPSession)

    @property
    def port(self) -> int:
        return self.server_address[1]


class SMTPSession(socketserver.StreamRequestHandler):
    def reply(self, line: str) -> None:
        self.wfile.write(line.encode() + b"\r\n")

    def handle(self):
        server: FakeSMTP = self.server
        envelope = {"from": "", "to": [], "data": b""}
        self.reply("220 fake.test ESMTP")
        while line := self.rfile.readline():
            verb = line[:4].upper()
            if verb in (b"EHLO", b"HELO"):
                self.reply("250-fake.test")
                self.reply("250 8BITMIME")
            elif verb == b"MAIL":
                envelope["from"] = line.decode().split(":", 1)[1].strip()
                self.reply("250 OK")
            elif verb == b"RCPT":
                if server.refuse:
                    self.reply("550 5.7.1 Relaying denied")
                else:
                    envelope["to"].append(line.decode().split(":", 1)[1].strip())
                    self.reply("250 OK")
            elif verb == b"DATA":
                self.reply("354 End data with <CR><LF>.<CR><LF>")
                data = []
                while (chunk := self.rfile.readline()) not in (b".\r\n", b""):
                    data.append(chunk)
                envelope["data"] = b"".join(data)
                server.received.append(dict(envelope))
                self.reply("250 OK queued")
            elif verb == b"QUIT":
                self.reply("221 Bye")
                return
            elif verb in (b"RSET", b"NOOP"):
                self.reply("250 OK")
            else:
                self.reply("502 Command not implemented")


@pytest.fixture
def smtp_server(app, monkeypatch):
    """start(refuse=False) -> a running FakeSMTP that the app sends through."""
    servers = []

    def start(refuse: bool = False) -> FakeSMTP:
        server = FakeSMTP(refuse=refuse)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        monkeypatch.setitem(app.config, "MAIL_SERVER", "127.0.0.1")
        monkeypatch.setitem(app.config, "MAIL_PORT", server.port)
        monkeypatch.setitem(app.config, "MAIL_USE_TLS", False)
        monkeypatch.setitem(app.config, "MAIL_USE_SSL", False)
        monkeypatch.setitem(app.config, "MAIL_USERNAME", None)
        return server

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


# -- shops, orders, consoles ------------------------------------------------------------------


@pytest.fixture
def shops(create_tenant):
    return create_tenant(slug="maila"), create_tenant(slug="mailb")


def owner_console(client_for, shop):
    client = client_for(shop)
    assert client.login(f"owner@{shop.slug}.test", "owner-pass-1",
                        path="/admin/login").status_code == 302
    return client


@pytest.fixture
def admin(admin_client, create_admin):
    create_admin()
    assert admin_client.login("root@kameng.test", "admin-pass-1").status_code == 302
    return admin_client


def purchase(client_for, buy, pay_sandbox, card_product, shop, code, email):
    buyer = client_for(shop)
    page = pay_sandbox(buyer, buy(buyer, card_product(shop, codes=[code]), email=email))
    assert page.status_code == 200


def delivery_mail(in_app, shop, to) -> MailMessage:
    with in_app() as session:
        message = session.scalar(select(MailMessage).where(
            MailMessage.tenant_id == shop.id, MailMessage.kind == "order.delivered",
            MailMessage.to == to))
        session.expunge(message)
        return message


def test_a_delivery_mail_is_listed_for_its_shop_and_the_platform_only(
        shops, client_for, buy, pay_sandbox, card_product, in_app, admin):
    a, b = shops
    purchase(client_for, buy, pay_sandbox, card_product, a, "M-CODE-1", "alice@buyer.test")
    message = delivery_mail(in_app, a, "alice@buyer.test")
    assert message.status == "kept"  # no MAIL_SERVER in tests: kept for the consoles

    page = owner_console(client_for, a).get("/admin/mail").get_data(as_text=True)
    assert "alice@buyer.test" in page and message.subject in page and "order.delivered" in page
    other = owner_console(client_for, b)
    assert "alice@buyer.test" not in other.get("/admin/mail").get_data(as_text=True)
    assert other.get(f"/admin/mail/{message.id}").status_code == 404

    everything = admin.get("/mail/").get_data(as_text=True)
    assert "alice@buyer.test" in everything and "maila" in everything
    assert "alice@buyer.test" in admin.get("/mail/?shop=maila").get_data(as_text=True)
    assert "alice@buyer.test" not in admin.get("/mail/?shop=mailb").get_data(as_text=True)
    unknown = admin.get("/mail/?shop=nosuchshop", follow_redirects=True)
    assert "No shop with the address" in unknown.get_data(as_text=True)
    detail = admin.get(f"/mail/{message.id}").get_data(as_text=True)
    assert "alice@buyer.test" in detail and "/order/" in detail  # the body, with its link
    assert admin.get("/mail/2147483647").status_code == 404


def test_codes_are_in_the_delivery_mail_only_when_the_shop_turns_it_on(
        shops, client_for, buy, pay_sandbox, card_product, in_app):
    a, _ = shops
    console = owner_console(client_for, a)
    purchase(client_for, buy, pay_sandbox, card_product, a, "SECRET-CODE-OFF", "off@buyer.test")
    off = delivery_mail(in_app, a, "off@buyer.test")
    assert "SECRET-CODE-OFF" not in off.body and "/order/" in off.body

    saved = console.submit("/admin/mail", {"mail_codes": "y"}, follow_redirects=True)
    assert "now carry the codes" in saved.get_data(as_text=True)
    with in_app() as session:
        from kameng.tenants.models import Tenant

        assert session.get(Tenant, a.id).settings["mail_codes"] is True
    purchase(client_for, buy, pay_sandbox, card_product, a, "SECRET-CODE-ON", "on@buyer.test")
    on = delivery_mail(in_app, a, "on@buyer.test")
    assert "SECRET-CODE-ON" in on.body
    assert "SECRET-CODE-ON" in console.get(f"/admin/mail/{on.id}").get_data(as_text=True)

    console.submit("/admin/mail", {})  # unchecked: off again
    purchase(client_for, buy, pay_sandbox, card_product, a, "SECRET-CODE-2", "again@buyer.test")
    assert "SECRET-CODE-2" not in delivery_mail(in_app, a, "again@buyer.test").body


def test_only_the_owner_sees_mail_bodies(shops, client_for, buy, pay_sandbox, card_product,
                                         in_app, create_staff):
    a, _ = shops
    owner_console(client_for, a).submit("/admin/mail", {"mail_codes": "y"})
    purchase(client_for, buy, pay_sandbox, card_product, a, "SECRET-CODE-9", "nine@buyer.test")
    message = delivery_mail(in_app, a, "nine@buyer.test")
    for role in ("manager", "support"):
        staff = create_staff(a, email=f"{role}@maila.test", role=role)
        client = client_for(a)
        client.login(staff.email, "staff-pass-1", path="/admin/login")
        page = client.get(f"/admin/mail/{message.id}")
        text = page.get_data(as_text=True)
        assert page.status_code == 200 and message.subject in text and "nine@buyer.test" in text
        assert "SECRET-CODE-9" not in text and "/order/" not in text


def test_mail_pages_need_a_login(shops, client_for, admin_client):
    a, _ = shops
    for path in ("/admin/mail", "/admin/mail/1"):
        page = client_for(a).get(path)
        assert page.status_code == 302 and "/admin/login" in page.location
    for path in ("/mail/", "/mail/1"):
        page = admin_client.get(path)
        assert page.status_code == 302 and "/login" in page.location


# -- SMTP --------------------------------------------------------------------------------------


def queued(in_app, shop, to="buyer@smtp.test") -> int:
    with in_app() as session:
        message = queue_mail(tenant_id=shop.id, to=to, kind="order.delivered",
                             subject="Your order", body="Here is your order link.")
        session.commit()
        return message.id


def stored(in_app, message_id) -> MailMessage:
    with in_app() as session:
        message = session.get(MailMessage, message_id)
        session.expunge(message)
        return message


def test_smtp_sends_and_marks_the_mail_sent(shops, smtp_server, in_app):
    server = smtp_server()
    message_id = queued(in_app, shops[0])
    with in_app():
        assert deliver_message(message_id) == "sent"
    message = stored(in_app, message_id)
    assert (message.status, message.attempts, message.last_error) == ("sent", 1, "")
    assert message.sent_at is not None
    (received,) = server.received
    assert received["to"] == ["<buyer@smtp.test>"]
    assert b"Subject: Your order" in received["data"]
    assert b"Here is your order link." in received["data"]
    with in_app():
        assert deliver_message(message_id) == "sent"  # a second run sends nothing
    assert len(server.received) == 1


def test_a_refusing_smtp_server_marks_the_mail_failed_and_raises(shops, smtp_server, in_app):
    server = smtp_server(refuse=True)
    message_id = queued(in_app, shops[0])
    with in_app(), pytest.raises(smtplib.SMTPException):
        deliver_message(message_id)  # raised: the mail job retries with backoff
    message = stored(in_app, message_id)
    assert (message.status, message.attempts) == ("failed", 1)
    assert "Relaying denied" in message.last_error
    assert server.received == []
    server.refuse = False  # the retry goes through
    with in_app():
        assert deliver_message(message_id) == "sent"
    assert stored(in_app, message_id).status == "sent"
