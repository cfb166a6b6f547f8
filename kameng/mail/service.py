"""Sending mail: a row per message, delivered by the mail queue (SMTP), or kept for the
consoles when no MAIL_SERVER is configured."""

from __future__ import annotations

import smtplib
from datetime import UTC, datetime
from email.message import EmailMessage

from flask import current_app
from flask_babel import force_locale
from sqlalchemy import insert, select

from ..extensions import db
from ..merchant.models import StaffUser
from ..tenants.scoping import platform_scope, tenant_scope
from ..workers import outbox
from .models import MailMessage


def shop_language(tenant_id: int):
    """Write a shop's mails in its language, `with shop_language(shop.id): subject = _(...)`:
    a mail is read later, by someone who is not the visitor of this page (and a job has no
    visitor at all)."""
    from ..i18n import DEFAULT_LANGUAGE, LANGUAGES
    from ..tenants.models import Tenant

    shop = db.session.get(Tenant, tenant_id)
    locale = shop.locale if shop is not None and shop.locale in LANGUAGES else DEFAULT_LANGUAGE
    return force_locale(locale)


def queue_mail(*, tenant_id: int | None, to: str, kind: str, subject: str, body: str
               ) -> MailMessage:
    """Write a mail in the caller's transaction; the outbox sends it after the commit."""
    message = MailMessage(tenant_id=tenant_id, to=to, kind=kind, subject=subject[:200],
                          body=body, status="queued")
    db.session.add(message)
    db.session.flush()
    outbox.add("mail.send", tenant_id=tenant_id, message_id=message.id)
    return message


def queue_mails(*, tenant_id: int | None, kind: str, mails: list[tuple[str, str, str]]
                ) -> list[int]:
    """`queue_mail` for several mails of one kind, (to, subject, body) each: one INSERT for
    the messages and one for their outbox rows. Returns the messages' ids."""
    if not mails:
        return []
    ids = list(db.session.scalars(
        insert(MailMessage).returning(MailMessage.id, sort_by_parameter_order=True),
        [{"tenant_id": tenant_id, "to": to, "kind": kind, "subject": subject[:200],
          "body": body, "status": "queued"} for to, subject, body in mails]))
    outbox.add_many("mail.send", tenant_id=tenant_id,
                    payloads=[{"message_id": message_id} for message_id in ids])
    return ids


def shop_recipients(tenant_id: int) -> list[str]:
    """Who hears about a shop's orders and stock: its owners."""
    with tenant_scope(tenant_id):
        return list(db.session.scalars(
            select(StaffUser.email).where(StaffUser.role == "owner", StaffUser.active)))


def deliver_message(message_id: int) -> str:
    """Send one queued mail by SMTP (MAIL_SERVER), or keep it for the consoles without one.
    Idempotent: a sent or kept message is not sent again. A failure raises, so the mail job
    is retried with backoff; the error is kept on the message."""
    with platform_scope():
        message = db.session.get(MailMessage, message_id)
    if message is None or message.status in ("sent", "kept"):
        db.session.rollback()
        return message.status if message else "missing"
    config = current_app.config
    if not config.get("MAIL_SERVER"):
        message.status = "kept"
        db.session.commit()
        return "kept"
    mime = EmailMessage()
    mime["From"] = config["MAIL_FROM"]
    mime["To"] = message.to
    mime["Subject"] = message.subject
    mime.set_content(message.body)
    message.attempts += 1
    try:
        smtp_class = smtplib.SMTP_SSL if config.get("MAIL_USE_SSL") else smtplib.SMTP
        with smtp_class(config["MAIL_SERVER"], config["MAIL_PORT"], timeout=15) as smtp:
            if config.get("MAIL_USE_TLS"):
                smtp.starttls()
            if config.get("MAIL_USERNAME"):
                smtp.login(config["MAIL_USERNAME"], config.get("MAIL_PASSWORD") or "")
            smtp.send_message(mime)
    except (OSError, smtplib.SMTPException) as error:
        message.last_error = str(error)[:2000]
        message.status = "failed"
        db.session.commit()
        raise
    message.status = "sent"
    message.sent_at = datetime.now(UTC)
    message.last_error = ""
    db.session.commit()
    return "sent"
