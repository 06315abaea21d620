"""Logging in and roles: without a login everything is allowed, as on a laptop; with one, every write the
pages make is checked in the pipeline against the user's roles from secrets.toml."""

from __future__ import annotations

import pytest

from pipeline import access, personas
from pipeline.errors import UserFacingError
from pipeline.registry import lifecycle
from tests.conftest import write_secrets
from tests.test_registry import add_model

LOGIN = """
[auth]
redirect_uri = "http://localhost:8501/oauth2callback"
cookie_secret = "test-only"
client_id = "studio"
client_secret = "test-only"
server_metadata_url = "https://login.example.test/.well-known/openid-configuration"

[roles]
"Vi@Example.com" = ["viewer"]
"rita@example.com" = ["reviewer"]
"tom@example.com" = ["viewer", "trainer"]
"dee@example.com" = ["deployer"]
"""


@pytest.mark.parametrize("action", list(access.ACTIONS))
def test_each_action_needs_its_role_and_nothing_else(action):
    role, what = access.ACTIONS[action]
    access.require(None, action)  # no login: the single local user may do everything
    access.require(access.User("Ann", "ann@example.com", frozenset({role})), action)
    others = frozenset(set(access.ROLES) - {role})
    with pytest.raises(UserFacingError) as caught:
        access.require(access.User("Bo", "bo@example.com", others), action)
    message = str(caught.value)
    assert message.startswith(f"You need the {role} role to {what}")
    assert "bo@example.com" in message and "[roles]" in message


def test_the_actions_cover_the_writes_people_make_with_the_roles_they_need():
    needs = {action: role for action, (role, _) in access.ACTIONS.items()}
    assert needs["deploy"] == "deployer" and needs["review"] == "reviewer"
    assert {needs[a] for a in ("train", "generate", "build_dataset", "delete_dataset", "cancel")} == {"trainer"}
    assert needs["edit_persona"] == "trainer"
    with pytest.raises(ValueError, match="unknown action"):
        access.require(None, "launch_rockets")


def test_roles_come_from_secrets_by_email_in_any_case_with_a_default():
    assert not access.login_configured()
    write_secrets(LOGIN)
    assert access.login_configured() and access.login_providers() == []
    assert access.roles_for("vi@example.com") == {"viewer"}
    assert access.roles_for("TOM@example.com") == {"viewer", "trainer"}
    assert access.roles_for("stranger@example.com") == {"viewer"}  # logged in, but read-only
    write_secrets(LOGIN + 'default = ["reviewer", "superuser"]\n')
    assert access.roles_for("stranger@example.com") == {"reviewer"}  # unknown role names are ignored
    assert access.user("Tom", "tom@example.com") == access.User(
        "Tom", "tom@example.com", frozenset({"viewer", "trainer"})
    )


def test_a_viewer_cannot_deploy_and_nothing_changes_a_deployer_can_and_is_recorded():
    write_secrets(LOGIN)
    personas.seed_samples()
    persona_id = personas.get_persona("collaborative").id
    add_model("ft-one", persona_id)
    with access.acting_as(access.user("Vi", "vi@example.com")):
        with pytest.raises(UserFacingError, match="You need the deployer role to deploy"):
            lifecycle.deploy("ft-one", persona_id, actor="typed name")
        with pytest.raises(UserFacingError, match="You need the trainer role"):
            personas.create_persona({"name": "sneaky", "system_prompt": "x"})
    assert lifecycle.deployed(persona_id) is None and lifecycle.history(persona_id=persona_id) == []
    assert [p.name for p in personas.list_personas()] == ["collaborative"]
    with access.acting_as(access.user("Dee", "dee@example.com")):
        lifecycle.deploy("ft-one", persona_id, actor="typed name")
    assert lifecycle.deployed(persona_id).name == "ft-one"
    [event] = lifecycle.history(persona_id=persona_id)
    assert event["who"] == "Dee"  # the login's name, not what a box said
    assert access.current() is None  # the user was set for that block only


def test_each_role_does_its_own_work_and_is_refused_the_rest():
    from pipeline import jobs
    from pipeline.datasets import purge
    from pipeline.review import actions
    from tests.seed import add_examples

    write_secrets(LOGIN)
    personas.seed_samples()
    persona_id = personas.get_persona("collaborative").id
    [example] = add_examples(persona_id, 1)
    job = jobs.submit("probe", {"rate": 5, "seconds": 20})  # the command line: no login, allowed
    rita, tom = access.user("Rita", "rita@example.com"), access.user("Tom", "tom@example.com")
    with access.acting_as(rita):
        starred = actions.set_gold_star(example, True, "typed name")  # a reviewer reviews
        assert starred.gold_star and starred.reviewed_by == "Rita"  # the login names the reviewer, not a typed name
        with pytest.raises(UserFacingError, match="You need the trainer role to cancel or resume jobs"):
            jobs.request_cancel(job.id)
        with pytest.raises(UserFacingError, match="You need the trainer role to delete datasets or examples"):
            purge.delete_persona_data(persona_id, "collaborative")
    assert not jobs.get(job.id).cancel_requested and actions.get(example).gold_star
    with access.acting_as(tom):
        with pytest.raises(UserFacingError, match="You need the reviewer role to review examples"):
            actions.set_rating(example, 5)
        with pytest.raises(UserFacingError, match="You need the reviewer role"):
            actions.edit_response(example, "A better reply.")
        jobs.request_cancel(job.id)  # a trainer cancels
    assert jobs.get(job.id).cancel_requested and actions.get(example).rating is None


def test_a_part_of_a_page_that_runs_on_its_own_still_acts_as_the_sessions_user():
    """A fragment (the live boards' Stop and Cancel buttons) can run without app.py's run: the session's user is
    found where the app stored it, so a viewer is refused there too."""
    import threading

    from pipeline import jobs

    write_secrets(LOGIN)
    job = jobs.submit("probe", {"rate": 5, "seconds": 20})
    outcome = []

    def click_cancel():  # a fresh thread: none of the run's context
        try:
            jobs.request_cancel(job.id)
        except UserFacingError as exc:
            outcome.append(str(exc))

    try:
        access.use(None, lambda: access.user("Vi", "vi@example.com"))
        thread = threading.Thread(target=click_cancel)
        thread.start()
        thread.join()
    finally:
        access._session_user = None
    assert outcome and outcome[0].startswith("You need the trainer role to cancel or resume jobs")
    assert not jobs.get(job.id).cancel_requested
