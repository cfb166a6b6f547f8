"""After-sales pages: a buyer reports a problem from the order page and follows the ticket; the
shop answers, replaces codes, refunds or declines in its console. Access follows the order
page's rule; other buyers and other shops get 404; a resolution applies once."""

from __future__ import annotations

import html
import re
from types import SimpleNamespace

import pytest
from sqlalchemy import select, update

from .conftest import order_token

OWNER = ("owner@helpdesk.test", "owner-help-1")


def text(page) -> str:
    return html.unescape(page.get_data(as_text=True))


@pytest.fixture
def shop(create_tenant):
    return create_tenant(slug="helpdesk", owner_email=OWNER[0], owner_password=OWNER[1])


@pytest.fixture
def product(shop, card_product):
    return card_product(shop, codes=["BAD-1", "GOOD-2", "GOOD-3"])


@pytest.fixture
def order(shop, product, client_for, buy, pay_sandbox):
    """order(email=..., client=None) -> a delivered guest order: number, token, its buyer's
    client (which has seen the order, like any buyer right after paying)."""

    def place(email="buyer@example.test", client=None):
        client = client or client_for(shop)
        checkout = buy(client, product, email=email)
        token = order_token(checkout)
        page = pay_sandbox(client, checkout)
        assert page.status_code == 200
        number = re.search(r"Order (\S+)</h1>", text(page)).group(1)
        return SimpleNamespace(token=token, number=number, client=client, page=page)

    return place


def report(buyer, base, reason="code_invalid", message="The game says the code is invalid."):
    """Report a problem on the order at `base` (/order/<token> or /orders/<number>)."""
    return buyer.client.submit(f"{base}/report", {"reason": reason, "message": message})


def ticket_id_of(response) -> int:
    assert response.status_code == 302, text(response)[:3000]
    return int(response.location.rsplit("/", 1)[1])


def code_ids(console, ticket_id) -> list[int]:
    page = text(console.get(f"/admin/tickets/{ticket_id}"))
    return [int(i) for i in re.findall(r'name="replace-codes"[^>]*value="(\d+)"', page)]


def act(console, ticket_id, action, data):
    return console.submit(f"/admin/tickets/{ticket_id}/{action}", data,
                          form_path=f"/admin/tickets/{ticket_id}")


def code_statuses(in_app, shop) -> dict[str, str]:
    from kameng.inventory.models import CardCode
    from kameng.security.crypto import keyring

    with in_app(shop) as session:
        return {keyring().decrypt(c.ciphertext): c.status
                for c in session.scalars(select(CardCode))}


def mail_kinds(in_app) -> list[tuple[str, str]]:
    from kameng.mail.models import MailMessage

    with in_app() as session:
        return [(m.kind, m.to) for m in session.scalars(select(MailMessage).order_by(
            MailMessage.id))]


# -- the whole story -------------------------------------------------------------------------


def test_an_invalid_code_is_reported_replaced_and_never_sold_again(
        shop, order, console, in_app, client_for, buy, pay_sandbox):
    buyer = order()
    base = f"/order/{buyer.token}"
    page = text(buyer.page)
    assert "BAD-1" in page and "Report a problem" in page and f"{base}/report" in page

    form = buyer.client.get(f"{base}/report")
    assert form.status_code == 200 and "The code is invalid" in text(form)
    ticket_id = ticket_id_of(report(buyer, base))
    ticket_page = buyer.client.get(f"{base}/tickets/{ticket_id}")
    assert ticket_page.headers["Cache-Control"] == "no-store"
    assert "The game says the code is invalid." in text(ticket_page)
    assert "Open" in text(ticket_page)

    reply = buyer.client.submit(f"{base}/tickets/{ticket_id}",
                                {"message": "I tried twice, still invalid."})
    assert reply.status_code == 302
    order_page = text(buyer.client.get(base))
    assert f"Request #{ticket_id}" in order_page
    assert "Report a problem</a>" not in order_page  # one open ticket at a time

    # The shop sees it, answers and replaces the reported code.
    listing = text(console.get("/admin/tickets"))
    assert buyer.number in listing and "buyer@example.test" in listing
    detail = text(console.get(f"/admin/tickets/{ticket_id}"))
    assert "I tried twice, still invalid." in detail
    assert "BAD-1" not in detail  # staff pick codes by id; they never see them here
    assert act(console, ticket_id, "reply", {"reply-message": "Sorry, checking."}
               ).status_code == 302
    (bad_id,) = code_ids(console, ticket_id)
    replaced = act(console, ticket_id, "replace", {"replace-codes": str(bad_id),
                                                    "replace-message": "Here is a new one."})
    assert replaced.status_code == 302
    assert "1 code(s) replaced" in text(console.get(replaced.location))

    # A second click on the same form changes nothing.
    again = act(console, ticket_id, "replace", {"replace-codes": str(bad_id)})
    assert again.status_code == 302
    assert "closed already" in text(console.get(again.location))
    assert code_statuses(in_app, shop) == {"BAD-1": "void", "GOOD-2": "sold",
                                           "GOOD-3": "available"}

    # The buyer sees the new code on the ticket and on the order, and the shop's messages.
    ticket_page = text(buyer.client.get(f"{base}/tickets/{ticket_id}"))
    assert "Your new codes" in ticket_page and "GOOD-2" in ticket_page
    assert "Sorry, checking." in ticket_page and "Resolved" in ticket_page
    assert 'name="message"' not in ticket_page  # closed: no reply form
    order_page = text(buyer.client.get(base))
    assert "GOOD-2" in order_page and "BAD-1" not in order_page
    kinds = mail_kinds(in_app)
    assert ("ticket.new", OWNER[0]) in kinds and ("ticket.update", "buyer@example.test") in kinds

    # The voided code is never sold again: the next buyer gets the last good one.
    nxt = order(email="next@example.test", client=client_for(shop))
    assert "GOOD-3" in text(nxt.page) and "BAD-1" not in text(nxt.page)
    assert code_statuses(in_app, shop)["BAD-1"] == "void"


def test_the_buyer_form_shows_errors_and_refuses_what_it_cannot_do(order, client_for, shop,
                                                                   product, buy):
    buyer = order()
    base = f"/order/{buyer.token}"
    empty = report(buyer, base, message="  ")
    assert empty.status_code == 422 and "This field is required." in text(empty)
    bogus = report(buyer, base, reason="stolen")
    assert bogus.status_code == 422 and "Not a valid choice" in text(bogus)
    long = report(buyer, base, message="x" * 4001)
    assert long.status_code == 422 and "4000" in text(long)

    ticket_id = ticket_id_of(report(buyer, base))
    # A second report goes to the open ticket instead.
    second = buyer.client.get(f"{base}/report")
    assert second.status_code == 302 and second.location.endswith(f"/tickets/{ticket_id}")
    empty_reply = buyer.client.submit(f"{base}/tickets/{ticket_id}", {"message": ""})
    assert empty_reply.status_code == 422 and "This field is required." in text(empty_reply)

    # An unpaid order has nothing to report.
    client = client_for(shop)
    pending = buy(client, product, email="slow@example.test")
    token = order_token(pending)
    refused = client.get(f"/order/{token}/report")
    assert refused.status_code == 302 and refused.location.endswith(f"/order/{token}")
    assert "delivered order" in text(client.get(refused.location))


def test_csrf_is_enforced_on_both_sides(order, console):
    buyer = order()
    base = f"/order/{buyer.token}"
    no_token = buyer.client.post(f"{base}/report", data={"reason": "other", "message": "hi"})
    assert no_token.status_code == 400
    ticket_id = ticket_id_of(report(buyer, base))
    assert buyer.client.post(f"{base}/tickets/{ticket_id}",
                             data={"message": "hi"}).status_code == 400
    for action in ("reply", "replace", "refund", "decline"):
        assert console.post(f"/admin/tickets/{ticket_id}/{action}",
                            data={"decline-reason": "no"}).status_code == 400, action
    detail = text(console.get(f"/admin/tickets/{ticket_id}"))
    assert "Open" in detail


# -- who may see what --------------------------------------------------------------------------


def test_other_buyers_and_other_shops_get_404(order, shop, client_for, create_tenant,
                                             card_product, console, buy, pay_sandbox,
                                             create_customer):
    buyer = order()
    ticket_id = ticket_id_of(report(buyer, f"/order/{buyer.token}"))
    by_number = f"/orders/{buyer.number}"
    # The buyer's own browser (it has seen the order) may also use the order's number.
    assert buyer.client.get(f"{by_number}/tickets/{ticket_id}").status_code == 200

    stranger = client_for(shop)
    for path in (f"{by_number}/tickets/{ticket_id}", f"{by_number}/report",
                 f"/order/not-the-token/tickets/{ticket_id}", "/order/not-the-token/report"):
        assert stranger.get(path).status_code == 404, path
    # A logged-in buyer who does not own the order neither.
    other = create_customer(shop, email="other@example.test")
    assert stranger.login(other.email, "buyer-pass-1").status_code == 302
    assert stranger.get(f"{by_number}/tickets/{ticket_id}").status_code == 404
    assert "No support requests" in text(stranger.get("/account/tickets"))

    # A ticket of another order, under this order's address.
    second = order(email="second@example.test")
    second_ticket = ticket_id_of(report(second, f"/order/{second.token}"))
    assert buyer.client.get(f"/order/{buyer.token}/tickets/{second_ticket}").status_code == 404

    # Another shop: neither its shop pages nor its console reach this shop's ticket.
    rival = create_tenant(slug="rival", owner_email="owner@rival.test",
                          owner_password="owner-rival-1")
    card_product(rival, codes=["R-1"])
    rival_site = client_for(rival)
    assert rival_site.get(f"/order/{buyer.token}/tickets/{ticket_id}").status_code == 404
    rival_console = client_for(rival)
    assert rival_console.login("owner@rival.test", "owner-rival-1",
                               path="/admin/login").status_code == 302
    assert rival_console.get(f"/admin/tickets/{ticket_id}").status_code == 404
    assert "second@example.test" not in text(rival_console.get("/admin/tickets"))
    token = rival_console.csrf_token("/admin/tickets")
    for action, data in (("reply", {"reply-message": "hi"}), ("decline", {"decline-reason": "x"}),
                         ("refund", {"refund-to": "gateway"}),
                         ("replace", {"replace-codes": "1"})):
        assert rival_console.post(f"/admin/tickets/{ticket_id}/{action}",
                                  data={"csrf_token": token, **data}).status_code == 404
    assert "Open" in text(console.get(f"/admin/tickets/{ticket_id}"))


def test_a_registered_buyer_finds_tickets_in_the_account(shop, product, client_for, buy,
                                                        pay_sandbox, create_customer):
    customer = create_customer(shop, email="member@example.test")
    client = client_for(shop)
    assert client.login(customer.email, "buyer-pass-1").status_code == 302
    pay_sandbox(client, buy(client, product, email=customer.email))
    fresh = client_for(shop)  # a new browser: only the login gives access
    assert fresh.login(customer.email, "buyer-pass-1").status_code == 302
    orders_page = text(fresh.get("/account/orders"))
    number = re.search(r'href="/orders/(\d[^"/]*)"', orders_page).group(1)
    made = fresh.submit(f"/orders/{number}/report", {"reason": "code_used",
                                                     "message": "Already redeemed."})
    ticket_id = ticket_id_of(made)
    assert made.location.endswith(f"/orders/{number}/tickets/{ticket_id}")
    mine = text(fresh.get("/account/tickets"))
    assert f"#{ticket_id}" in mine and "The code was already used" in mine
    assert "My support requests" in text(fresh.get("/account"))
    assert fresh.get("/account/tickets").status_code == 200
    assert client_for(shop).get("/account/tickets").status_code == 302  # to the login page


# -- the shop console --------------------------------------------------------------------------


def test_the_shop_lists_filters_replies_refunds_and_declines(order, console, in_app, shop):
    from kameng.orders.models import Order

    tickets = {}
    for name in ("refund", "decline", "waiting"):
        buyer = order(email=f"{name}@example.test")
        tickets[name] = ticket_id_of(report(buyer, f"/order/{buyer.token}", reason="other",
                                            message=f"Please help ({name})."))

    listing = console.get("/admin/tickets")
    assert listing.status_code == 200
    assert "All (3)" in text(listing) and "Open (3)" in text(listing)
    assert act(console, tickets["waiting"], "reply", {"reply-message": "Looking into it."}
               ).status_code == 302
    answered = text(console.get("/admin/tickets?status=answered"))
    assert "waiting@example.test" in answered and "refund@example.test" not in answered
    assert "Answered (1)" in answered
    assert "waiting@example.test" in text(console.get("/admin/tickets?status=active"))
    assert console.get("/admin/tickets?status=%27;drop").status_code == 200  # unknown: all
    bad_reply = act(console, tickets["waiting"], "reply", {"reply-message": "   "})
    assert bad_reply.status_code == 422 and "This field is required." in text(bad_reply)

    # Refund: through the gateway for a guest; a wallet refund is refused with a reason.
    no_wallet = act(console, tickets["refund"], "refund", {"refund-to": "wallet"})
    assert no_wallet.status_code == 422 and "A guest has no wallet" in text(no_wallet)
    nonsense = act(console, tickets["refund"], "refund", {"refund-to": "cash"})
    assert nonsense.status_code == 422
    refunded = act(console, tickets["refund"], "refund", {"refund-to": "gateway"})
    assert refunded.status_code == 302
    assert "refunded" in text(console.get(refunded.location))
    twice = act(console, tickets["refund"], "refund", {"refund-to": "gateway"})
    assert "closed already" in text(console.get(twice.location))
    with in_app(shop) as session:
        refunded_order = session.scalar(select(Order).where(Order.email == "refund@example.test"))
        assert refunded_order.status == "refunded"
        assert sum("refunded" in (e.note or "") for e in refunded_order.events
                   if e.to_status == "refunded") == 1

    # Decline: a reason is required, and the buyer reads it.
    no_reason = act(console, tickets["decline"], "decline", {"decline-reason": ""})
    assert no_reason.status_code == 422 and "This field is required." in text(no_reason)
    assert act(console, tickets["decline"], "decline",
               {"decline-reason": "The code works: we checked it."}).status_code == 302
    twice = act(console, tickets["decline"], "decline", {"decline-reason": "Again."})
    assert "closed already" in text(console.get(twice.location))
    detail = text(console.get(f"/admin/tickets/{tickets['decline']}"))
    assert detail.count("The code works: we checked it.") == 1 and "Again." not in detail
    assert f'action="/admin/tickets/{tickets["decline"]}/reply"' not in detail

    listing = text(console.get("/admin/tickets"))
    assert "Resolved (1)" in listing and "Declined (1)" in listing and "Answered (1)" in listing
    assert "Needs attention (1)" in listing


def test_replacing_codes_refuses_foreign_or_missing_choices_cleanly(order, console, in_app,
                                                                    shop):
    first, second = order(), order(email="second@example.test")
    ticket_id = ticket_id_of(report(first, f"/order/{first.token}"))
    other_ticket = ticket_id_of(report(second, f"/order/{second.token}"))
    (foreign_id,) = code_ids(console, other_ticket)
    for codes in ("", str(foreign_id), "abc", "99999999999999999999"):
        page = act(console, ticket_id, "replace", {"replace-codes": codes})
        assert page.status_code == 422, codes
    # Out of stock: the service's refusal shows on the page and nothing changes.
    with in_app(shop) as session:
        from kameng.inventory.models import CardCode

        session.execute(update(CardCode).where(CardCode.status == "available")
                        .values(status="void"))
        session.commit()
    (own_id,) = code_ids(console, ticket_id)
    empty = act(console, ticket_id, "replace", {"replace-codes": str(own_id)})
    assert empty.status_code == 422 and "is in stock to replace it" in text(empty)
    assert code_statuses(in_app, shop)["BAD-1"] == "sold"


def test_support_staff_answer_tickets_but_do_not_refund(order, shop, client_for, create_staff):
    buyer = order()
    ticket_id = ticket_id_of(report(buyer, f"/order/{buyer.token}"))
    helper = create_staff(shop, email="help@helpdesk.test", role="support")
    client = client_for(shop)
    assert client.login(helper.email, "staff-pass-1", path="/admin/login").status_code == 302
    assert "After-sales" in text(client.get("/admin/tickets"))
    detail = text(client.get(f"/admin/tickets/{ticket_id}"))
    assert "Refund the order" not in detail and "Replace codes" in detail
    assert act(client, ticket_id, "refund", {"refund-to": "gateway"}).status_code == 403
    assert act(client, ticket_id, "reply", {"reply-message": "On it."}).status_code == 302


# -- every theme -------------------------------------------------------------------------------


@pytest.mark.parametrize("theme", ("default", "neon", "minimal"))
def test_every_theme_renders_the_after_sales_pages(theme, app, shop, order, console):
    from kameng.extensions import db
    from kameng.tenants.models import Tenant

    with app.app_context():
        db.session.execute(update(Tenant).where(Tenant.id == shop.id).values(theme=theme))
        db.session.commit()
    buyer = order()
    base = f"/order/{buyer.token}"
    assert "Report a problem" in text(buyer.page)
    form = buyer.client.get(f"{base}/report")
    assert form.status_code == 200 and "What is wrong?" in text(form)
    ticket_id = ticket_id_of(report(buyer, base))
    (code_id,) = code_ids(console, ticket_id)
    assert act(console, ticket_id, "replace", {"replace-codes": str(code_id)}).status_code == 302
    page = buyer.client.get(f"{base}/tickets/{ticket_id}")
    assert page.status_code == 200
    body = text(page)
    assert "GOOD-2" in body and "ticket-status resolved" in body
    assert f"/theme/{theme}/style.css" in body
