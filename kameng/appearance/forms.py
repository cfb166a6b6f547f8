"""The Appearance page's form: the shop's name, notice, footer links and contacts, and the
chosen theme's settings as its theme.json declares them (one field per setting)."""

from __future__ import annotations

from flask_babel import lazy_gettext as _l
from flask_wtf.file import FileField
from wtforms import (
    BooleanField,
    ColorField,
    EmailField,
    FieldList,
    FormField,
    RadioField,
    SelectChoice,
    SelectField,
    StringField,
    TextAreaField,
)
from wtforms import Form as PlainForm
from wtforms.validators import DataRequired, Length, Optional, Regexp

from ..forms import Form
from ..i18n import LANGUAGES
from .service import (
    COLOR,
    LINK_LABEL_MAX,
    LINK_URL_MAX,
    MAX_FOOTER_LINKS,
    NAME_MAX,
    NOTICE_MAX,
    AppearanceChanges,
    Setting,
)

IMAGE_TYPES = "image/png,image/jpeg,image/gif,image/webp"


class FooterLinkForm(PlainForm):
    """One footer link (no CSRF token of its own: it is part of the Appearance form)."""

    label = StringField(_l("Label"), validators=[Optional(), Length(max=LINK_LABEL_MAX)])
    url = StringField(_l("Address (https://…)"), validators=[Optional(), Length(max=LINK_URL_MAX)])


class AppearanceForm(Form):
    name = StringField(_l("Shop name"), validators=[DataRequired(), Length(max=NAME_MAX)])
    locale = SelectField(_l("Default language"),
                         choices=[SelectChoice(code, name) for code, name in LANGUAGES.items()],
                         description=_l("What buyers see until they choose a language "
                                        "themselves, and the language of your shop's mails."))
    notice = TextAreaField(_l("Announcement"), validators=[Length(max=NOTICE_MAX)])
    links = FieldList(FormField(FooterLinkForm), min_entries=MAX_FOOTER_LINKS,
                      max_entries=MAX_FOOTER_LINKS)
    contact_email = EmailField(_l("E-mail"), validators=[Optional(), Length(max=254)])
    contact_qq = StringField(_l("QQ"), validators=[Optional(), Length(max=12)])
    contact_telegram = StringField(_l("Telegram"), validators=[Optional(), Length(max=33)])
    contact_wechat = StringField(_l("WeChat id"), validators=[Optional(), Length(max=20)])

    schema: list[Setting] = []

    def setting_fields(self) -> list[tuple[Setting, object, object | None]]:
        """(setting, its field, its "remove" checkbox for images) in theme.json order."""
        return [(s, self[s.key], self._fields.get(f"remove_{s.key}")) for s in self.schema]

    def image_settings(self) -> list[Setting]:
        return [s for s in self.schema if s.type == "image"]

    def changes(self) -> AppearanceChanges:
        return AppearanceChanges(
            name=self.name.data or "",
            locale=self.locale.data or "",
            settings={s.key: self[s.key].data for s in self.schema if s.type != "image"},
            notice=self.notice.data or "",
            footer_links=[(entry.form.label.data, entry.form.url.data) for entry in self.links],
            contacts={"email": self.contact_email.data, "qq": self.contact_qq.data,
                      "telegram": self.contact_telegram.data,
                      "wechat": self.contact_wechat.data},
        )

    def uploads(self) -> dict[str, bytes | None]:
        """kind -> the uploaded bytes (capped just above the limit), or None: remove it.
        Images neither uploaded nor removed are left out."""
        from ..security.images import MAX_IMAGE_BYTES

        found: dict[str, bytes | None] = {}
        for setting in self.image_settings():
            upload = self[setting.key].data
            if upload is not None and getattr(upload, "filename", ""):
                found[setting.key] = upload.read(MAX_IMAGE_BYTES + 1)
            elif self[f"remove_{setting.key}"].data:
                found[setting.key] = None
        return found


def _setting_field(setting: Setting):
    description = setting.help
    if setting.type == "color":
        return ColorField(setting.label, description=description, validators=[
            DataRequired(), Regexp(COLOR.pattern + "$", message=_l("Enter a colour as #rrggbb."))])
    if setting.type == "text":
        return StringField(setting.label, description=description,
                           validators=[Length(max=setting.max_length)])
    if setting.type == "boolean":
        return BooleanField(setting.label, description=description)
    if setting.type == "choice":
        choices = [SelectChoice(value, label) for value, label in setting.choices]
        return RadioField(setting.label, description=description, choices=choices,
                          validators=[DataRequired(message=_l("Choose one of the options."))])
    return FileField(setting.label, description=description)


def appearance_form(schema: list[Setting], **kwargs) -> AppearanceForm:
    """The form for a theme's settings (its fields are made from `schema`)."""

    class ThemedAppearanceForm(AppearanceForm):
        pass

    # A setting named like something the form already has (a field, a method) is skipped.
    schema = [s for s in schema if not hasattr(AppearanceForm, s.key)
              and not hasattr(AppearanceForm, f"remove_{s.key}")]
    ThemedAppearanceForm.schema = schema
    for setting in schema:
        setattr(ThemedAppearanceForm, setting.key, _setting_field(setting))
        if setting.type == "image":
            setattr(ThemedAppearanceForm, f"remove_{setting.key}",
                    BooleanField(_l("Remove the %(lower)s", lower=setting.label.lower())))
    return ThemedAppearanceForm(**kwargs)
