"""The product page kept for visitors without a session (its checkout form then carries no
CSRF token), checkout with and without a token, and stock kept apart from the kept pages."""

from __future__ import annotations

import time

import pytest

from kameng.storefront import fast_lane
from kameng.storefront import views as storefront_views

from .conftest import CSRF_RE
from .test_storefront_fast_lane import flask_requests

GUEST = {"qty": 1, "email": "guest@example.test", "payment_method": "sandbox"}


@pytest.fixture
def views_counted(monkeypatch):
    """Product views counted, whether Flask served the page or the fast lane replayed it."""
    counted: list[tuple[int, int]] = []
    for module in (storefront_views, fast_lane):
        monkeypatch.setattr(module, "record_view",
                            lambda tenant_id, product_id: counted.append((tenant_id, product_id)))
    return counted


def test_a_visitor_without_a_session_gets_the_kept_product_page_without_flask(
        app, create_tenant, card_product, client_for, views_counted):
    shop = create_tenant(slug="kept")
    product_id = card_product(shop, codes=["K-1", "K-2"], name="Kept card")
    visitor = client_for(shop)
    first = visitor.get(f"/product/{product_id}")
    assert first.status_code == 200 and "Set-Cookie" not in first.headers
    body = first.get_data(as_text=True)
    assert "Kept card" in body and "2 in stock" in body and 'name="csrf_token"' not in body
    with flask_requests(app) as seen:
        again = visitor.get(f"/product/{product_id}")
        third = client_for(shop).get(f"/product/{product_id}")
    assert not seen and again.status_code == third.status_code == 200
    assert "Set-Cookie" not in again.headers and "Kept card" in again.get_data(as_text=True)
    # Each view counts, the replayed ones too.
    assert views_counted == [(shop.id, product_id)] * 3


def test_a_guest_without_a_session_checks_out_without_a_token(
        create_tenant, card_product, client_for, pay_sandbox):
    shop = create_tenant(slug="kept")
    product_id = card_product(shop, codes=["K-1"], name="Kept card")
    guest = client_for(shop)
    guest.get(f"/product/{product_id}")
    placed = guest.post(f"/product/{product_id}/checkout", data=GUEST)
    assert placed.status_code == 302 and "/pay/sandbox/" in placed.location
    assert "K-1" in pay_sandbox(guest, placed).get_data(as_text=True)


def test_a_logged_in_buyer_needs_the_token(
        create_tenant, create_customer, card_product, client_for):
    shop = create_tenant(slug="kept")
    product_id = card_product(shop, codes=["K-1", "K-2"], name="Kept card")
    buyer = create_customer(shop, email="me@kept.test", password="buyer-pass-1")
    client = client_for(shop)
    assert client.login(buyer.email, "buyer-pass-1").status_code == 302
    page = client.get(f"/product/{product_id}").get_data(as_text=True)
    token = CSRF_RE.search(page)
    assert token, "a logged-in buyer's checkout form carries a CSRF token"
    unconfirmed = client.post(f"/product/{product_id}/checkout", data=GUEST)
    assert unconfirmed.status_code == 422  # nothing placed: the form comes back to confirm
    assert "confirm it once more" in unconfirmed.get_data(as_text=True)
    forged = client.post(f"/product/{product_id}/checkout",
                         data={**GUEST, "csrf_token": "not-the-token"})
    assert forged.status_code == 400
    assert "did not come from this site" in forged.get_data(as_text=True)
    placed = client.post(f"/product/{product_id}/checkout",
                         data={**GUEST, "csrf_token": token.group(1)})
    assert placed.status_code == 302 and "/pay/sandbox/" in placed.location


def test_a_guest_with_a_session_needs_the_token_and_gets_a_page_of_their_own(
        app, create_tenant, card_product, client_for):
    shop = create_tenant(slug="kept")
    product_id = card_product(shop, codes=["K-1"], name="Kept card")
    client_for(shop).get(f"/product/{product_id}")  # the page kept for visitors
    guest = client_for(shop)
    guest.csrf_token("/orders/lookup")  # the lookup form gives this browser a session
    page = guest.get(f"/product/{product_id}").get_data(as_text=True)
    token = CSRF_RE.search(page)
    assert token, "a visitor with a session gets a token, never the kept page"
    placed = guest.post(f"/product/{product_id}/checkout",
                        data={**GUEST, "csrf_token": token.group(1)})
    assert placed.status_code == 302


def test_a_form_from_the_kept_page_after_a_session_began_comes_back_to_confirm(
        app, create_tenant, card_product, client_for, in_app):
    """The guest loaded the kept (token-less) page, then got a session in another tab: the
    checkout places nothing and shows the same form, filled in and with a token, to confirm."""
    from sqlalchemy import func, select

    from kameng.orders.models import Order

    shop = create_tenant(slug="kept")
    product_id = card_product(shop, codes=["K-1"], name="Kept card")
    guest = client_for(shop)
    assert not CSRF_RE.search(guest.get(f"/product/{product_id}").get_data(as_text=True))
    guest.csrf_token("/orders/lookup")  # the other tab: now this browser has a session
    again = guest.post(f"/product/{product_id}/checkout", data=GUEST)
    page = again.get_data(as_text=True)
    assert again.status_code == 422 and "confirm it once more" in page
    assert GUEST["email"] in page  # as the buyer filled it in
    with in_app(shop) as session:
        assert session.scalar(select(func.count()).select_from(Order)) == 0
    token = CSRF_RE.search(page)
    assert token, "the form now carries this session's token"
    forged = guest.post(f"/product/{product_id}/checkout", data={**GUEST, "csrf_token": "x"})
    assert forged.status_code == 400  # a wrong token is still refused
    placed = guest.post(f"/product/{product_id}/checkout",
                        data={**GUEST, "csrf_token": token.group(1)})
    assert placed.status_code == 302 and "/pay/sandbox/" in placed.location


def test_a_sale_shows_at_once_and_re_renders_only_pages_showing_its_stock(
        app, create_tenant, card_product, client_for, views_counted):
    assert app.config["STOREFRONT_STOCK_STALE_SECONDS"] == 0  # tests: stock shown exactly
    shop = create_tenant(slug="kept")
    sold = card_product(shop, codes=["S-1", "S-2"], name="Selling card")
    other = card_product(shop, codes=["O-1"], name="Other card")
    visitor = client_for(shop)
    for path in (f"/product/{sold}", f"/product/{other}", "/", f"/product/{sold}",
                 f"/product/{other}", "/"):
        visitor.get(path)
    buyer = client_for(shop)
    assert buyer.post(f"/product/{sold}/checkout", data=GUEST).status_code == 302
    assert "1 in stock" in visitor.get(f"/product/{sold}").get_data(as_text=True)
    assert buyer.post(f"/product/{sold}/checkout",
                      data={**GUEST, "csrf_token": buyer.csrf_token(f"/product/{sold}")}
                      ).status_code == 302
    with flask_requests(app) as seen:
        sold_out = visitor.get(f"/product/{sold}").get_data(as_text=True)
        assert len(seen) == 1  # the stock changed: through Flask, which counts it
        assert "Sold out" in sold_out and "Selling card" in sold_out
        assert "Sold out" in visitor.get("/").get_data(as_text=True)
        kept = visitor.get(f"/product/{other}").get_data(as_text=True)
        assert len(seen) == 2  # the other product's page stayed kept: the fast lane's
        assert "1 in stock" in kept


def test_stock_may_be_stale_only_within_the_bound(
        app, create_tenant, card_product, client_for, monkeypatch):
    monkeypatch.setitem(app.config, "STOREFRONT_STOCK_STALE_SECONDS", 1)
    shop = create_tenant(slug="kept")
    sold = card_product(shop, codes=["S-1"], name="Selling card")
    visitor = client_for(shop)
    visitor.get(f"/product/{sold}")
    counted_at = time.monotonic()
    buyer = client_for(shop)
    assert buyer.post(f"/product/{sold}/checkout", data=GUEST).status_code == 302
    page = visitor.get(f"/product/{sold}").get_data(as_text=True)
    if time.monotonic() - counted_at < 0.9:  # within the bound it may still show the old count
        assert "1 in stock" in page or "Sold out" in page
    time.sleep(max(0.0, counted_at + 1.05 - time.monotonic()))
    assert "Sold out" in visitor.get(f"/product/{sold}").get_data(as_text=True)
    assert "Sold out" in visitor.get("/").get_data(as_text=True)
    # Checkout re-checks real stock: the stale page never sells what is gone.
    assert client_for(shop).post(f"/product/{sold}/checkout", data=GUEST).status_code != 302


def test_guests_with_a_session_share_the_kept_page_each_with_their_own_token(
        app, create_tenant, card_product, client_for, monkeypatch):
    """A guest with a session (an order looked up, a form seen) gets the product page kept for
    such guests, rendered once, with their own CSRF token in it: another guest's token does
    not work for them, and a sale still shows."""
    shop = create_tenant(slug="kept")
    product_id = card_product(shop, codes=["T-1", "T-2"], name="Token card")
    renders = []
    product_page = storefront_views.product_page

    def counting(*args, **kwargs):
        renders.append(1)
        return product_page(*args, **kwargs)

    monkeypatch.setattr(storefront_views, "product_page", counting)
    guests = [client_for(shop), client_for(shop)]
    tokens = []
    for guest in guests:
        guest.csrf_token("/orders/lookup")  # now this browser has a session
        for _ in range(2):
            page = guest.get(f"/product/{product_id}").get_data(as_text=True)
            assert "Token card" in page and "2 in stock" in page
            assert storefront_views.CSRF_STAND_IN not in page
        tokens.append(CSRF_RE.search(page).group(1))
    assert len(renders) == 1  # four views, one rendering
    assert tokens[0] != tokens[1]
    stolen = guests[0].post(f"/product/{product_id}/checkout",
                            data={**GUEST, "csrf_token": tokens[1]})
    assert stolen.status_code == 400  # another guest's token is refused
    placed = guests[0].post(f"/product/{product_id}/checkout",
                            data={**GUEST, "csrf_token": tokens[0]})
    assert placed.status_code == 302
    page = guests[1].get(f"/product/{product_id}").get_data(as_text=True)
    assert "1 in stock" in page and len(renders) == 2  # the sale shows: rendered again


def test_where_the_shop_hides_counts_a_sale_re_renders_nothing_until_sold_out(
        app, create_tenant, card_product, client_for, in_app, monkeypatch):
    """Its pages say only "In stock" or "Sold out": they are kept under that, not the count."""
    from kameng.tenants.models import Tenant

    renders: list[str] = []

    def counted(name):
        render = getattr(storefront_views, name)

        def counting(*args, **kwargs):
            renders.append(name)
            return render(*args, **kwargs)
        return counting

    for name in ("home_page", "product_page"):
        monkeypatch.setattr(storefront_views, name, counted(name))
    shop = create_tenant(slug="hidden")
    sold = card_product(shop, codes=["H-1", "H-2", "H-3"], name="Quiet card")
    with in_app(shop) as session:
        session.get(Tenant, shop.id).settings = {"show_stock_numbers": False}
        session.commit()
    visitor = client_for(shop)
    for path in ("/", f"/product/{sold}"):
        page = visitor.get(path).get_data(as_text=True)
        assert "In stock" in page and "3 in stock" not in page
    assert sorted(renders) == ["home_page", "product_page"]
    buyer = client_for(shop)
    assert buyer.post(f"/product/{sold}/checkout", data=GUEST).status_code == 302
    for path in ("/", f"/product/{sold}"):
        page = visitor.get(path).get_data(as_text=True)
        assert "In stock" in page and "Sold out" not in page
    assert len(renders) == 2  # 3 -> 2 codes shows the same: both pages stayed kept
    for _ in range(2):
        assert client_for(shop).post(f"/product/{sold}/checkout", data=GUEST).status_code == 302
    assert "Sold out" in visitor.get(f"/product/{sold}").get_data(as_text=True)
    assert "Sold out" in visitor.get("/").get_data(as_text=True)
    assert len(renders) == 4  # sold out shows otherwise: both rendered again
